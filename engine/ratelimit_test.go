package engine

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	const rate, burst = 10, 3
	var b bucket
	t0 := int64(time.Hour)
	var got []bool
	for i := 0; i < 5; i++ { // a burst of 5 at one instant
		ok, abusive := b.allow(t0, rate, burst)
		if abusive {
			t.Fatal("a single burst judged abusive")
		}
		got = append(got, ok)
	}
	if want := "[true true true false false]"; fmtBools(got) != want {
		t.Fatalf("burst %v, want %s", got, want)
	}
	if ok, _ := b.allow(t0+int64(100*time.Millisecond), rate, burst); !ok {
		t.Fatal("no token after a tenth of a second at 10/s")
	}
	// Refused continuously (every 10 ms, faster than the refill): the
	// flood began with the burst's refusals at t0 and ends 5 s later.
	var closedAt time.Duration
	for d := time.Duration(0); d <= 6*time.Second; d += 10 * time.Millisecond {
		if _, abusive := b.allow(t0+int64(200*time.Millisecond+d), rate, burst); abusive {
			closedAt = 200*time.Millisecond + d
			break
		}
	}
	if closedAt < 4900*time.Millisecond || closedAt > 5100*time.Millisecond {
		t.Fatalf("flood closed after %v, want 5 s", closedAt)
	}
	// A pause of more than a second ends a flood.
	var c bucket
	c.allow(t0, rate, 1)
	c.allow(t0, rate, 1) // refused: flood starts
	if _, abusive := c.allow(t0+int64(4*time.Second), rate, 0.5); abusive {
		t.Fatal("refusals 4 s apart are not a flood")
	}
}

func fmtBools(b []bool) string {
	s := "["
	for i, v := range b {
		if i > 0 {
			s += " "
		}
		if v {
			s += "true"
		} else {
			s += "false"
		}
	}
	return s + "]"
}
