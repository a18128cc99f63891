package pebble

import (
	"crypto/rand"
	"sync"
	"testing"
	"time"
)

func msgID() (id [16]byte) {
	_, _ = rand.Read(id[:])
	return id
}

// appendSync appends and waits for the durable result.
func appendSync(t testing.TB, db *DB, m Message, offline bool) AppendResult {
	return appendOpts(t, db, m, AppendOptions{Offline: offline, ClientID: true})
}

func appendOpts(t testing.TB, db *DB, m Message, opts AppendOptions) AppendResult {
	t.Helper()
	ch := make(chan AppendResult, 1)
	if err := db.AppendPrivate(m, opts, func(r AppendResult) { ch <- r }); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-ch:
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("append never completed")
	}
	return AppendResult{}
}

// offline reads uid's private queues (peer 0: all of them), dropping the
// empty page of a one-peer query.
func offline(t testing.TB, db *DB, uid, peer uint64) []OfflinePage {
	t.Helper()
	res, err := db.ReadOffline(uid, QueueQuery{Peer: peer, Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	var out []OfflinePage
	for _, pg := range res.Friends {
		if len(pg.Msgs) > 0 {
			out = append(out, pg)
		}
	}
	return out
}

// flushLazy waits until deferred work submitted before it is committed.
func flushLazy(t testing.TB, db *DB) {
	t.Helper()
	ch := make(chan error, 1)
	if err := db.submit(op{applyFn: func(*tx) error { return nil }, doneFn: func(err error) { ch <- err }}, 0); err != nil {
		t.Fatal(err)
	}
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
}

func seqs(ms []Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

// The group commit (commit.go): appends in flight together share synced
// commits, and acks come in submit order. (Seqs and counters under
// concurrent appends are in the storagetest suite.)
func TestSection4_2_ConcurrentAppendsShareCommits(t *testing.T) {
	db := openTest(t, t.TempDir())
	const senders, each = 50, 200
	const receiver = 1000
	var wg sync.WaitGroup
	for s := uint64(1); s <= senders; s++ {
		wg.Go(func() {
			var mu sync.Mutex
			got := make([]uint64, 0, each)
			var inner sync.WaitGroup
			for i := 0; i < each; i++ {
				inner.Add(1)
				err := db.AppendPrivate(Message{ID: msgID(), From: s, To: receiver, ChatType: ChatPrivate, Content: "c", CreateTime: int64(i)}, AppendOptions{Offline: true}, func(r AppendResult) {
					defer inner.Done()
					if r.Err != nil {
						t.Error(r.Err)
						return
					}
					mu.Lock()
					got = append(got, r.Msg.Seq)
					mu.Unlock()
				})
				if err != nil {
					t.Error(err)
					inner.Done()
				}
			}
			inner.Wait()
			// Acks arrive in submit order, so seqs are exactly 1..each.
			for i, s := range got {
				if s != uint64(i+1) {
					t.Errorf("sender seqs %v", got[:min(len(got), 10)])
					return
				}
			}
		})
	}
	wg.Wait()
	st := db.CommitStats()
	if st.Ops != senders*each || st.Batches >= st.Ops {
		t.Fatalf("commit stats %+v: not grouped", st)
	}
	t.Logf("%d appends in %d synced commits", st.Ops, st.Batches)
}

// commit.go: outcomes are told in commit order, batch after batch, and
// Close returns only once every operation submitted before it was told.
func TestSection4_2_OutcomesInCommitOrderBeforeClose(t *testing.T) {
	db, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	var mu sync.Mutex
	var seqs []uint64
	for i := range n {
		m := Message{ID: msgID(), From: 1, To: 2, ChatType: ChatPrivate, Content: "m", CreateTime: int64(i)}
		if err := db.AppendPrivate(m, AppendOptions{}, func(r AppendResult) {
			if r.Msg.Seq > n-50 {
				// The last outcomes take a while to tell (work, not a
				// wait): Close must still be behind them.
				for t0 := time.Now(); time.Since(t0) < time.Millisecond; {
				}
			}
			mu.Lock()
			seqs = append(seqs, r.Msg.Seq)
			mu.Unlock()
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seqs) != n {
		t.Fatalf("%d outcomes told before Close returned, want %d", len(seqs), n)
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("outcome %d has seq %d: out of commit order", i, s)
		}
	}
	if st := db.CommitStats(); st.Batches < 2 {
		t.Logf("only %d batches: the order across batches was not exercised", st.Batches)
	}
}
