import PersistCore
import Testing

/// The frontier rules of spec/persist.md §1.2, checked case by case and then against a
/// small independent model over a grid of interesting values.
@Suite struct AntichainTests {
    /// Frontiers that exercise both ends of the range and the empty antichain.
    static let grid: [Antichain] = [
        .empty, .minimum, Antichain(1), Antichain(2), Antichain(1000),
        Antichain(UInt64.max - 1), Antichain(UInt64.max),
    ]
    static let times: [Timestamp] = [0, 1, 2, 999, 1000, 1001, UInt64.max - 1, UInt64.max]

    @Test func constructionAndEmptiness() {
        #expect(Antichain.empty.isEmpty)
        #expect(Antichain.empty.element == nil)
        #expect(Antichain(element: nil) == .empty)
        #expect(!Antichain.minimum.isEmpty)
        #expect(Antichain.minimum.element == 0)
        #expect(Antichain(element: 5) == Antichain(5))
        #expect(Antichain(5).description == "[5]")
        #expect(Antichain.empty.description == "[]")
    }

    @Test func lessEqualTime() {
        #expect(Antichain(5).lessEqual(5))
        #expect(Antichain(5).lessEqual(6))
        #expect(!Antichain(5).lessEqual(4))
        #expect(Antichain.minimum.lessEqual(0))
        #expect(Antichain(UInt64.max).lessEqual(UInt64.max))
        // The empty frontier is beyond every time.
        for t in Self.times { #expect(!Antichain.empty.lessEqual(t)) }
    }

    @Test func lessThanTime() {
        #expect(!Antichain(5).lessThan(5))
        #expect(Antichain(5).lessThan(6))
        #expect(!Antichain(5).lessThan(4))
        #expect(!Antichain.minimum.lessThan(0))
        #expect(Antichain.minimum.lessThan(1))
        #expect(!Antichain(UInt64.max).lessThan(UInt64.max))
        for t in Self.times { #expect(!Antichain.empty.lessThan(t)) }
    }

    @Test func frontierOrder() {
        #expect(Antichain(3).lessEqual(Antichain(3)))
        #expect(Antichain(3).lessEqual(Antichain(4)))
        #expect(!Antichain(4).lessEqual(Antichain(3)))
        // Everything is <= the empty frontier, and the empty frontier is <= only itself.
        for a in Self.grid { #expect(a.lessEqual(.empty)) }
        for a in Self.grid where !a.isEmpty {
            #expect(!Antichain.empty.lessEqual(a))
        }
        #expect(Antichain.empty.lessEqual(.empty))
        // {0} is the least frontier.
        for a in Self.grid { #expect(Antichain.minimum.lessEqual(a)) }
    }

    @Test func meetIsMinWithEmptyAsIdentity() {
        #expect(Antichain(3).meet(Antichain(7)) == Antichain(3))
        #expect(Antichain(7).meet(Antichain(3)) == Antichain(3))
        for a in Self.grid {
            #expect(a.meet(.empty) == a)
            #expect(Antichain.empty.meet(a) == a)
            #expect(a.meet(a) == a)
            #expect(a.meet(.minimum) == .minimum)
        }
    }

    @Test func joinIsMaxWithEmptyAbsorbing() {
        #expect(Antichain(3).join(Antichain(7)) == Antichain(7))
        #expect(Antichain(7).join(Antichain(3)) == Antichain(7))
        for a in Self.grid {
            #expect(a.join(.empty) == .empty)
            #expect(Antichain.empty.join(a) == .empty)
            #expect(a.join(a) == a)
            #expect(a.join(.minimum) == a)
        }
    }

    @Test func advance() {
        #expect(Antichain(10).advance(3) == 10)
        #expect(Antichain(10).advance(10) == 10)
        #expect(Antichain(10).advance(11) == 11)
        #expect(Antichain.minimum.advance(0) == 0)
        for t in Self.times {
            #expect(Antichain.empty.advance(t) == t)
            for f in Self.grid where !f.isEmpty {
                let advanced = f.advance(t)
                #expect(f.lessEqual(advanced), "advanced time is at or beyond the frontier")
                #expect(advanced >= t, "advancing never moves a time backwards")
                if f.lessEqual(t) { #expect(advanced == t, "times already beyond stay put") }
            }
        }
    }

    /// A model: a frontier as a point on the extended line, the empty frontier as +infinity.
    enum Point: Comparable {
        case at(UInt64)
        case top
        init(_ a: Antichain) { self = a.element.map(Point.at) ?? .top }
    }

    @Test func agreesWithModelOnGrid() {
        for a in Self.grid {
            for t in Self.times {
                #expect(a.lessEqual(t) == (Point(a) <= .at(t)))
                #expect(a.lessThan(t) == (Point(a) < .at(t)))
            }
            for b in Self.grid {
                #expect(a.lessEqual(b) == (Point(a) <= Point(b)), "\(a) <= \(b)")
                #expect(Point(a.meet(b)) == min(Point(a), Point(b)))
                #expect(Point(a.join(b)) == max(Point(a), Point(b)))
            }
        }
    }

    @Test func latticeLaws() {
        for a in Self.grid {
            for b in Self.grid {
                #expect(a.meet(b) == b.meet(a))
                #expect(a.join(b) == b.join(a))
                // Absorption.
                #expect(a.meet(a.join(b)) == a)
                #expect(a.join(a.meet(b)) == a)
                // Order and lattice operations agree.
                #expect(a.lessEqual(b) == (a.meet(b) == a))
                #expect(a.lessEqual(b) == (a.join(b) == b))
                // Total order: any two frontiers are comparable.
                #expect(a.lessEqual(b) || b.lessEqual(a))
                #expect((a.lessEqual(b) && b.lessEqual(a)) == (a == b))
                for c in Self.grid {
                    #expect(a.meet(b).meet(c) == a.meet(b.meet(c)))
                    #expect(a.join(b).join(c) == a.join(b.join(c)))
                    if a.lessEqual(b) && b.lessEqual(c) { #expect(a.lessEqual(c)) }
                }
            }
        }
    }

    @Test func frontierOrderMatchesTimesAllowed() {
        // A <= B exactly when every time B allows is allowed by A.
        for a in Self.grid {
            for b in Self.grid {
                let implied = Self.times.allSatisfy { !b.lessEqual($0) || a.lessEqual($0) }
                #expect(a.lessEqual(b) == implied, "\(a) <= \(b)")
            }
        }
    }
}
