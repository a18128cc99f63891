package pebble

import (
	"sync"
	"testing"
	"time"
)

// BenchmarkAppendPrivate measures the durable append path on a real
// directory: "group" keeps many appends in flight, as router workers do,
// so one fsync covers many; "serial" waits for each ack before the next
// append, which is one fsync per message.
func BenchmarkAppendPrivate(b *testing.B) {
	for _, mode := range []struct {
		name     string
		inFlight int
	}{{"group", 1024}, {"serial", 1}} {
		b.Run(mode.name, func(b *testing.B) {
			db, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			content := "a typical customer-service question, about sixty bytes long."
			sem := make(chan struct{}, mode.inFlight)
			var wg sync.WaitGroup
			done := func(r AppendResult) {
				if r.Err != nil {
					b.Error(r.Err)
				}
				<-sem
				wg.Done()
			}
			before := db.CommitStats()
			b.ReportAllocs()
			b.SetBytes(int64(len(content)))
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				sem <- struct{}{}
				wg.Add(1)
				from := uint64(i%200) + 1
				m := Message{ID: msgID(), From: from, To: from + 1000, FromID: "visitor", ToID: "agent", ChatType: ChatPrivate, Content: content, CreateTime: int64(i)}
				if err := db.AppendPrivate(m, AppendOptions{Offline: i%2 == 0}, done); err != nil {
					b.Fatal(err)
				}
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			st := db.CommitStats()
			fsyncs := st.Batches - before.Batches
			b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
			b.ReportMetric(float64(fsyncs)/el.Seconds(), "fsyncs/s")
			b.ReportMetric(float64(b.N)/float64(max(fsyncs, 1)), "msgs/fsync")
		})
	}
}
