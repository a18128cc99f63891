package engine

import (
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// loopConn is a gnet.Conn whose async writes run at once, as the loop
// would run them, and whose socket takes everything.
type loopConn struct {
	gnet.Conn
	bytes int
}

func (l *loopConn) AsyncWritev(_ [][]byte, cb gnet.AsyncCallback) error { return cb(l, nil) }
func (l *loopConn) Writev(bs [][]byte) (int, error) {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	l.bytes += n
	return n, nil
}
func (l *loopConn) OutboundBuffered() int { return 0 }

// BenchmarkDeliverFanOut pushes one encoded frame to the 2000 live members
// of a group through the registry and each connection's outbox, as a
// group message does (PROTOCOL §5). The socket is replaced by a counter,
// so this is the engine's cost per delivery; allocs/op ÷ 2000 is allocs
// per delivery. gnet's own AsyncWritev allocates one task per connection
// per flush, which this fake does not count.
func BenchmarkDeliverFanOut(b *testing.B) {
	const members = 2000
	e := &Engine{opts: Options{}.withDefaults()}
	e.reg.init()
	for uid := uint64(1); uid <= members; uid++ {
		c := &conn{e: e, gc: &loopConn{}}
		c.phase.Store(int32(phaseOpen))
		c.out.init(c)
		e.reg.add(uid, c)
	}
	frame := make([]byte, 200)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for uid := uint64(1); uid <= members; uid++ {
			e.reg.deliver(uid, frame, nil, nil)
		}
	}
	el := time.Since(start)
	b.ReportMetric(float64(b.N*members)/el.Seconds(), "deliveries/s")
	b.ReportMetric(float64(testing.AllocsPerRun(1, func() {
		for uid := uint64(1); uid <= members; uid++ {
			e.reg.deliver(uid, frame, nil, nil)
		}
	}))/members, "allocs/delivery")
}
