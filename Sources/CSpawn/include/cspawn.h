#ifndef CSPAWN_H
#define CSPAWN_H

#include <spawn.h>

/// Adds a "close every descriptor from lowfd up" action to a posix_spawn file-actions
/// object (glibc 2.34+), so a child does not inherit the parent's sockets. Returns 0,
/// or an error number (ENOSYS where the C library lacks it).
int cspawn_add_close_from(posix_spawn_file_actions_t *actions, int lowfd);

#endif
