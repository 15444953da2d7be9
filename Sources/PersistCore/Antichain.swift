/// A frontier over totally ordered `Timestamp`s.
///
/// For a total order an antichain holds at most one element, so a frontier is either
/// `{t}` (every time `>= t` is still possible) or empty (no time is possible any more:
/// the frontier is *closed*). The empty antichain is the top of the frontier order.
public struct Antichain: Hashable, Sendable {
    /// The single element, or `nil` for the empty (closed) antichain.
    public let element: Timestamp?

    /// `{t}`.
    public init(_ t: Timestamp) { self.element = t }

    /// `{t}`, or empty when `t` is `nil`.
    public init(element: Timestamp?) { self.element = element }

    /// The empty antichain: closed, no further times.
    public static let empty = Antichain(element: nil)
    /// `{0}`: the least frontier, every time is still possible.
    public static let minimum = Antichain(0)

    /// Whether this is the empty (closed) antichain.
    public var isEmpty: Bool { element == nil }

    /// `F <= t`: `t` is at or beyond this frontier (never true for the empty frontier).
    public func lessEqual(_ t: Timestamp) -> Bool {
        guard let e = element else { return false }
        return e <= t
    }

    /// `F < t`: `t` is strictly beyond this frontier.
    public func lessThan(_ t: Timestamp) -> Bool {
        guard let e = element else { return false }
        return e < t
    }

    /// Frontier order: `self <= other` when every time allowed by `other` is allowed by
    /// `self`. Everything is `<=` the empty frontier; the empty frontier is `<=` only itself.
    public func lessEqual(_ other: Antichain) -> Bool {
        switch (element, other.element) {
        case (_, nil): return true
        case (nil, .some): return false
        case (let a?, let b?): return a <= b
        }
    }

    /// The greatest lower bound (the earlier of the two; empty is the identity).
    public func meet(_ other: Antichain) -> Antichain {
        switch (element, other.element) {
        case (nil, _): return other
        case (_, nil): return self
        case (let a?, let b?): return Antichain(Swift.min(a, b))
        }
    }

    /// The least upper bound (the later of the two; empty absorbs).
    public func join(_ other: Antichain) -> Antichain {
        switch (element, other.element) {
        case (nil, _), (_, nil): return .empty
        case (let a?, let b?): return Antichain(Swift.max(a, b))
        }
    }

    /// Advances `t` to this frontier: `max(t, element)`; `t` itself when empty.
    public func advance(_ t: Timestamp) -> Timestamp {
        guard let e = element else { return t }
        return Swift.max(t, e)
    }
}

extension Antichain: CustomStringConvertible {
    public var description: String { element.map { "[\($0)]" } ?? "[]" }
}
