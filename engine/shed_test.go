package engine

import "testing"

// PROTOCOL §2: past the output budget the heaviest connections are shed,
// never one that keeps up with its output. The budget's counter can run
// ahead of what the connections still hold (bytes of a connection closing
// meanwhile, or shed by a send, not yet given back): the pass must not
// make up the difference by closing light connections.
func TestSection2_ShedSparesConnectionsThatKeepUp(t *testing.T) {
	const budget = 1 << 20
	const gone = 1200 << 10 // counted, held by a reader closed since
	for _, tc := range []struct {
		name      string
		heavy     int  // what the reader that stopped reading holds
		heavyShed bool // the pass closes it
	}{
		{"over the target", 1 << 20, true},
		{"the excess on its way back", 512 << 10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &Engine{opts: Options{MaxPending: 512 << 10, MaxOutputTotal: budget}.withDefaults()}
			e.log = e.opts.Logger
			loop := &taskLoop{}
			mk := func(queued int) *scheduleConn {
				gc := &scheduleConn{}
				c := &conn{e: e, gc: gc, lf: e.flushers.of(loop)}
				c.phase.Store(int32(phaseOpen))
				c.out.mu.bytes = queued
				e.conns.add(c)
				return gc
			}
			heavy := mk(tc.heavy)
			sender := mk(200) // a sender's acks, read as they come
			e.unsent.Store(int64(tc.heavy) + 200 + gone)
			e.shedPass()
			if shed := len(heavy.cbs) == 1; shed != tc.heavyShed {
				t.Fatalf("the reader holding %d bytes shed: %v, want %v", tc.heavy, shed, tc.heavyShed)
			}
			if len(sender.cbs) != 0 {
				t.Fatal("a connection holding 200 bytes was shed")
			}
		})
	}
}
