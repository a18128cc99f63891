package engine

import (
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// loopConn is a gnet.Conn whose socket takes everything.
type loopConn struct {
	gnet.Conn
	bytes, writes int
}

func (l *loopConn) Writev(bs [][]byte) (int, error) {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	l.bytes += n
	l.writes++
	return n, nil
}
func (l *loopConn) OutboundBuffered() int { return 0 }

// BenchmarkDeliverFanOut pushes one encoded frame to the 2000 live members
// of a group through the registry and each connection's outbox, as a
// group message does (PROTOCOL §5), then runs the loops' flush tasks. The
// members are spread over two loops. The socket is replaced by a counter,
// so this is the engine's cost per delivery; allocs/op ÷ 2000 is allocs
// per delivery and tasks/op the loop tasks per message (gnet's Execute
// allocates about two objects per task, which the fake loop does not).
func BenchmarkDeliverFanOut(b *testing.B) {
	const members = 2000
	e := &Engine{opts: Options{}.withDefaults()}
	e.reg.init()
	loops := []*taskLoop{{}, {}}
	for uid := uint64(1); uid <= members; uid++ {
		c := &conn{e: e, gc: &loopConn{}, lf: e.flushers.of(loops[uid%2])}
		c.phase.Store(int32(phaseOpen))
		e.reg.add(uid, c, 0)
	}
	frame := make([]byte, 200)
	tasks := 0
	deliver := func() {
		for uid := uint64(1); uid <= members; uid++ {
			e.reg.deliver(uid, frame, nil, nil)
		}
		for _, l := range loops {
			tasks += l.run()
		}
	}
	deliver() // warm-up: queue and dirty-list backing arrays
	tasks = 0
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		deliver()
	}
	el := time.Since(start)
	b.ReportMetric(float64(b.N*members)/el.Seconds(), "deliveries/s")
	b.ReportMetric(float64(tasks)/float64(b.N), "tasks/op")
	b.ReportMetric(testing.AllocsPerRun(1, deliver)/members, "allocs/delivery")
}
