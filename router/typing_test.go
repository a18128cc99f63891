package router

import "testing"

// PROTOCOL §7.6: the throttle passes changes, holds repeats for a second
// and keeps its memory bounded.
func TestSection7_6_TypingThrottle(t *testing.T) {
	var th typingThrottle
	steps := []struct {
		state int8
		at    int64
		pass  bool
	}{{1, 0, true}, {1, 999, false}, {0, 999, true}, {0, 1998, false}, {0, 1999, true}, {1, 1999, true}}
	for i, s := range steps {
		if got := th.pass(1, 2, s.state, s.at); got != s.pass {
			t.Fatalf("step %d %+v: pass=%v", i, s, got)
		}
	}
	if !th.pass(2, 1, 1, 1999) {
		t.Fatal("the other direction is another pair")
	}
	for i := uint64(0); i < typingMaxPairs+100; i++ {
		th.pass(i+10, 1, 1, 5000)
	}
	if n := len(th.pairs); n > typingMaxPairs {
		t.Fatalf("%d pairs remembered, bound %d", n, typingMaxPairs)
	}
}
