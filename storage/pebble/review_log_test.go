package pebble

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// Review of the message log (DIR/messages): what a crash, a failed
// operation, a restart or a concurrent reader does to records, references
// and the ids the store makes.

// lsnOf is the lsn a store-made id carries (storeID).
func lsnOf(id [16]byte) uint64 { return binary.BigEndian.Uint64(id[6:14]) }

// recallSync recalls and waits for the outcome.
func recallSync(t testing.TB, db *DB, from uint64, id [16]byte) (Message, error) {
	t.Helper()
	ch := make(chan error, 1)
	var got Message
	if err := db.Recall(from, id, 0, func(m Message, err error) { got = m; ch <- err }); err != nil {
		t.Fatal(err)
	}
	err := <-ch
	return got, err
}

// groupQueue lists uid's queued seqs of group gid.
func groupQueue(t testing.TB, db *DB, uid, gid uint64) []uint64 {
	t.Helper()
	res, err := db.ReadOffline(uid, QueueQuery{Group: gid, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, pg := range res.Groups {
		out = append(out, seqs(pg.Msgs)...)
	}
	return out
}

// PROTOCOL §4.3, the group commit (commit.go: build): an operation that
// fails after writing a log record is taken out and the batch built again
// without it. Its record goes with the batch, its lsn is given to the next
// message (lsns, and so store-made ids, stay dense), and the conversation
// cache forgets its seq.
func TestSection4_3_RebuiltBatchTakesBackItsLogRecord(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	release := holdCommitter(t, db) // the three operations in one batch
	results := make(chan AppendResult, 2)
	send := func(content string) {
		m := private(1, 2, content)
		m.ID = [16]byte{} // the store makes it
		if err := db.AppendPrivate(m, AppendOptions{Offline: true}, func(r AppendResult) { results <- r }); err != nil {
			t.Fatal(err)
		}
	}
	send("a")
	boom := errors.New("boom")
	failed := make(chan error, 1)
	if err := db.submit(op{
		applyFn: func(t *tx) error {
			conv := privateConv(1, 2)
			st, err := t.conv(conv)
			if err != nil {
				return err
			}
			m := private(1, 2, "discarded")
			t.appendCore(conv, st, &m, true, false) // a record, a reference, an lsn
			return boom
		},
		doneFn: func(err error) { failed <- err },
	}, 0); err != nil {
		t.Fatal(err)
	}
	send("c")
	release()
	a, c := <-results, <-results
	if err := <-failed; !errors.Is(err, boom) {
		t.Fatalf("the failing operation got %v", err)
	}
	if a.Err != nil || c.Err != nil {
		t.Fatalf("the others failed: %v, %v", a.Err, c.Err)
	}
	if a.Msg.ID != storeID(1000, 1) || c.Msg.ID != storeID(1000, 2) || a.Msg.Seq != 1 || c.Msg.Seq != 2 {
		t.Fatalf("ids %x (seq %d), %x (seq %d): want lsns 1 and 2, seqs 1 and 2", a.Msg.ID, a.Msg.Seq, c.Msg.ID, c.Msg.Seq)
	}
	h, _, err := db.History(1, 2, HistoryQuery{Count: 10})
	if err != nil || len(h) != 2 || h[0].Content != "a" || h[1].Content != "c" || h[1].ID != c.Msg.ID {
		t.Fatalf("history %+v %v", h, err)
	}
	if q := offline(t, db, 2, 1); len(q) != 1 || fmt.Sprint(seqs(q[0].Msgs)) != "[1 2]" {
		t.Fatalf("2's queue %+v", q)
	}
	if dup := appendOpts(t, db, Message{ID: c.Msg.ID, From: 1, To: 2, ChatType: ChatPrivate, Content: "x"}, AppendOptions{ClientID: true}); !dup.Duplicate || dup.Msg.Content != "c" || dup.Online {
		t.Fatalf("resend of c's id: %+v", dup)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	ldb := rawOpen(t, filepath.Join(dir, logDir))
	got := logRecords(t, ldb)
	if err := ldb.Close(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[1:a 2:c]" {
		t.Fatalf("log %v: the discarded operation's record must be gone", got)
	}
	db = openTest(t, dir)
	d := private(2, 1, "d")
	d.ID = [16]byte{}
	if r := appendOpts(t, db, d, AppendOptions{}); lsnOf(r.Msg.ID) != 3 || r.Msg.Seq != 3 {
		t.Fatalf("after a restart: lsn %d seq %d, want 3 and 3", lsnOf(r.Msg.ID), r.Msg.Seq)
	} else {
		r.Delivery.Settle(true)
	}
}

// PROTOCOL §5 and §4.5 with ids the store makes: a group message without
// a client id gets a store id from the store-wide lsn (shared with private
// messages), which finds it for a resend (the first ack, no second copy)
// and, after a restart, for its sender's recall, which empties the
// members' queues; nobody else can recall it; lsns go on after a restart.
func TestSection5_GroupMessagesWithStoreMadeIDs(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	var gid uint64
	for _, uid := range []uint64{1, 2, 3} {
		ch := make(chan error, 1)
		if err := db.Join("g1", uid, 1000, 100, func(g uint64, res int, err error) {
			gid = g
			if err == nil && res != JoinOK {
				err = fmt.Errorf("join %d", res)
			}
			ch <- err
		}); err != nil {
			t.Fatal(err)
		}
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	group := func(db *DB, from uint64, content string, id [16]byte, clientID bool) AppendResult {
		t.Helper()
		var offline []uint64
		for _, u := range []uint64{1, 2, 3} {
			if u != from {
				offline = append(offline, u)
			}
		}
		ch := make(chan AppendResult, 1)
		m := Message{ID: id, From: from, FromID: fmt.Sprint("u", from), ChatType: ChatGroup, Group: gid, GroupID: "g1", Content: content, CreateTime: 2000}
		if err := db.AppendGroup(m, nil, offline, db.MembershipVersion(gid), AppendOptions{ClientID: clientID}, func(r AppendResult) { ch <- r }); err != nil {
			t.Fatal(err)
		}
		r := <-ch
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		return r
	}
	p := private(1, 2, "private first")
	p.ID = [16]byte{}
	if r := appendOpts(t, db, p, AppendOptions{Offline: true}); lsnOf(r.Msg.ID) != 1 {
		t.Fatalf("private message: lsn %d", lsnOf(r.Msg.ID))
	}
	g := group(db, 1, "hello", msgID(), false) // the router's id, replaced
	if g.Msg.ID != storeID(2000, 2) || g.Msg.Seq != 1 {
		t.Fatalf("group message id %x seq %d, want storeID(2000, 2), seq 1", g.Msg.ID, g.Msg.Seq)
	}
	dup := group(db, 1, "again", g.Msg.ID, true)
	if !dup.Duplicate || !dup.Online || dup.Msg.Seq != 1 || dup.Msg.Content != "hello" || dup.Msg.ID != g.Msg.ID {
		t.Fatalf("a resend of the group message's store id: %+v", dup)
	}
	for _, u := range []uint64{2, 3} {
		if q := groupQueue(t, db, u, gid); fmt.Sprint(q) != "[1]" {
			t.Fatalf("%d's group queue %v, want [1] (once)", u, q)
		}
	}
	if _, err := recallSync(t, db, 2, g.Msg.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("recall of 1's group message by 2: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openTest(t, dir)
	if m, err := recallSync(t, db, 1, g.Msg.ID); err != nil || !m.Recalled || m.Seq != 1 || m.Group != gid {
		t.Fatalf("recall after a restart: %+v %v", m, err)
	}
	for _, u := range []uint64{2, 3} {
		if q := groupQueue(t, db, u, gid); len(q) != 0 {
			t.Fatalf("%d's group queue after the recall: %v", u, q)
		}
	}
	next := group(db, 2, "after", [16]byte{}, false)
	if lsnOf(next.Msg.ID) != 3 || next.Msg.Seq != 2 {
		t.Fatalf("after a restart: lsn %d seq %d, want 3 and 2", lsnOf(next.Msg.ID), next.Msg.Seq)
	}
	h, _, err := db.GroupHistory(gid, HistoryQuery{Count: 10})
	if err != nil || len(h) != 2 || h[0].ID != g.Msg.ID || !h[0].Recalled || h[0].Content != "" || h[1].Content != "after" {
		t.Fatalf("group history %+v %v", h, err)
	}
}

// PROTOCOL §4.3, §4.4 and doc.go "Concurrency": readers run beside the
// committer, which commits the log before the store. A page of history
// or of a queue read meanwhile holds whole messages: every reference
// finds its record, seqs have no gaps, and a message is its content or
// its recall marker. At the end every store-made id is unique, ordered
// as its seq, and found again after a restart.
func TestSection4_4_ReadsBesideTheCommitterSeeWholeMessages(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	const writers, each = 3, 120
	errc := make(chan error, 16)
	report := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	// read calls fn until stop is closed or fn fails, which it reports.
	read := func(fn func() error) {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := fn(); err != nil {
					report(err)
					return
				}
			}
		}()
	}
	read(func() error {
		h, _, err := db.History(1, 2, HistoryQuery{Count: 40, Desc: true})
		if err != nil {
			return fmt.Errorf("history: %w", err)
		}
		for i, m := range h {
			if (i > 0 && m.Seq != h[i-1].Seq-1) || (m.From != 1 && m.From != 2) || (m.Content == "") != m.Recalled {
				return fmt.Errorf("history page %d: %+v", i, m)
			}
		}
		return nil
	})
	read(func() error {
		res, err := db.ReadOffline(2, QueueQuery{Peer: 1, Limit: 50})
		if err != nil {
			return fmt.Errorf("queue: %w", err)
		}
		for _, pg := range res.Friends {
			for _, m := range pg.Msgs {
				if m.From != 1 || m.To != 2 || (m.Content == "") != m.Recalled {
					return fmt.Errorf("queued %+v", m)
				}
			}
		}
		return nil
	})

	var mu sync.Mutex
	var all []Message
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				from, to := uint64(1), uint64(2)
				if (w+i)%2 == 1 {
					from, to = 2, 1
				}
				m := private(from, to, fmt.Sprintf("w%d-%d", w, i))
				m.ID = [16]byte{}
				ch := make(chan AppendResult, 1)
				if err := db.AppendPrivate(m, AppendOptions{Offline: true}, func(r AppendResult) { ch <- r }); err != nil {
					report(err)
					return
				}
				r := <-ch
				if r.Err != nil {
					report(r.Err)
					return
				}
				if i%3 == 0 {
					rch := make(chan error, 1)
					if err := db.Recall(from, r.Msg.ID, 0, func(_ Message, err error) { rch <- err }); err != nil {
						report(err)
						return
					}
					if err := <-rch; err != nil {
						report(fmt.Errorf("recall of %x: %w", r.Msg.ID, err))
						return
					}
					r.Msg.Recalled = true
				}
				mu.Lock()
				all = append(all, r.Msg)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
	check := func(db *DB) {
		t.Helper()
		h, _, err := db.History(1, 2, HistoryQuery{Count: 1000})
		if err != nil || len(h) != writers*each {
			t.Fatalf("history: %d messages, %v", len(h), err)
		}
		byID := make(map[[16]byte]Message, len(all))
		for _, m := range all {
			byID[m.ID] = m
		}
		if len(byID) != len(all) {
			t.Fatalf("%d ids for %d messages", len(byID), len(all))
		}
		for i, m := range h {
			sent, ok := byID[m.ID]
			if !ok || sent.Seq != m.Seq || sent.Recalled != m.Recalled || m.Seq != uint64(i+1) {
				t.Fatalf("history %d: %+v, acked as %+v", i, m, sent)
			}
			if i > 0 && string(m.ID[:]) <= string(h[i-1].ID[:]) {
				t.Fatalf("ids out of order at seq %d: %x after %x", m.Seq, m.ID, h[i-1].ID)
			}
		}
	}
	check(db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, dir)
	check(db)
	for _, m := range all[:10] {
		dup := appendOpts(t, db, Message{ID: m.ID, From: m.From, To: m.To, ChatType: ChatPrivate, Content: "x"}, AppendOptions{ClientID: true})
		if !dup.Duplicate || dup.Msg.Seq != m.Seq {
			t.Fatalf("resend of %x after a restart: %+v", m.ID, dup)
		}
	}
}

// doc.go "Concurrency" and Open: an Open that fails, because the message
// log cannot be opened or because what load reads from it is wrong,
// leaves neither Pebble directory open (Pebble refuses a second lock of a
// directory within one process): once the fault is gone the store opens.
func TestSection4_3_FailedOpenReleasesBothDirectories(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	appendSync(t, db, private(1, 2, "kept"), true)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, logDir)
	if err := os.Rename(logPath, logPath+".aside"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(logPath, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	if db, err := Open(dir, Options{}); err == nil {
		_ = db.Close()
		t.Fatal("opened with a file where the message log should be")
	}
	if err := os.Remove(logPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(logPath+".aside", logPath); err != nil {
		t.Fatal(err)
	}
	ldb := rawOpen(t, logPath)
	bad := []byte(prefixLog + "bad")
	if err := ldb.Set(bad, nil, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := ldb.Close(); err != nil {
		t.Fatal(err)
	}
	if db, err := Open(dir, Options{}); err == nil {
		_ = db.Close()
		t.Fatal("opened a log whose last key is no lsn")
	}
	ldb = rawOpen(t, logPath) // fails if the failed Open kept the log
	if err := ldb.Delete(bad, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := ldb.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, dir) // fails if a failed Open kept the store
	if h, _, err := db.History(1, 2, HistoryQuery{Count: 10}); err != nil || len(h) != 1 || h[0].Content != "kept" {
		t.Fatalf("history %+v %v", h, err)
	}
}

// PROTOCOL §4.1 (ext): "a repeat of the same id from the same sender is
// not stored again; the sender gets the same ack as the first time". A
// message acked 10001 (queued) and then recalled is still acked 10001
// when its id is sent again, as it was with the records in h| (the d|
// record kept the queued flag through a recall). With the log the flag
// is in the record, and a marker that drops it acks the resend 10000
// (so it did at 7ecb101).
func TestSection4_1_ResendAfterRecallGetsTheFirstAck(t *testing.T) {
	db := openTest(t, t.TempDir())
	client := private(1, 2, "client id")
	if first := appendSync(t, db, client, true); first.Online {
		t.Fatalf("first ack %+v, want queued", first)
	}
	if _, err := recallSync(t, db, 1, client.ID); err != nil {
		t.Fatal(err)
	}
	if again := appendSync(t, db, client, false); !again.Duplicate || again.Online {
		t.Errorf("a resend of a queued, recalled message (client id): Duplicate %v Online %v, want the first ack: queued (10001)", again.Duplicate, again.Online)
	}

	server := private(1, 2, "store id")
	server.ID = [16]byte{}
	first := appendOpts(t, db, server, AppendOptions{Offline: true})
	if _, err := recallSync(t, db, 1, first.Msg.ID); err != nil {
		t.Fatal(err)
	}
	again := appendOpts(t, db, Message{ID: first.Msg.ID, From: 1, To: 2, ChatType: ChatPrivate, Content: "x"}, AppendOptions{ClientID: true})
	if !again.Duplicate || again.Online {
		t.Errorf("a resend of a queued, recalled message (store id): Duplicate %v Online %v, want the first ack: queued (10001)", again.Duplicate, again.Online)
	}
}

// PROTOCOL §4.5 and §4.1, byID (message.go) after the recall fix: an id
// the store made for a record a crash left unreferenced (never acked,
// never given) names a seq that a later message took. Once that later
// message is recalled, history holds its marker in place of a reference;
// the orphan's id must still find nothing (not "recalled already"), and a
// resend of it by its sender is a new message, while the recalled
// message's own id finds its marker and the first ack.
func TestSection4_5_AnOrphansIDNeverNamesTheRecalledMessageAtItsSeq(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	first := private(1, 2, "one")
	first.ID = [16]byte{}
	if r := appendOpts(t, db, first, AppendOptions{Offline: true}); lsnOf(r.Msg.ID) != 1 || r.Msg.Seq != 1 {
		t.Fatalf("first: lsn %d seq %d", lsnOf(r.Msg.ID), r.Msg.Seq)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	ldb := rawOpen(t, filepath.Join(dir, logDir))
	orphanID := storeID(5000, 2)
	orphan := Message{ID: orphanID, From: 1, To: 2, FromID: "u1", ToID: "u2", ChatType: ChatPrivate, Content: "never acked", Seq: 2, CreateTime: 5000}
	if err := ldb.Set(keyLog(2), encodeMessage(&orphan), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := ldb.Close(); err != nil {
		t.Fatal(err)
	}

	db = openTest(t, dir)
	second := private(1, 2, "two")
	second.ID = [16]byte{}
	r := appendOpts(t, db, second, AppendOptions{Offline: true})
	if lsnOf(r.Msg.ID) != 3 || r.Msg.Seq != 2 {
		t.Fatalf("second: lsn %d seq %d, want 3 (after the orphan) and 2", lsnOf(r.Msg.ID), r.Msg.Seq)
	}
	if _, err := recallSync(t, db, 1, r.Msg.ID); err != nil {
		t.Fatal(err)
	}
	if m, err := recallSync(t, db, 1, orphanID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("recall by the orphan's id: %+v, %v; want ErrNotFound", m, err)
	}
	again := appendOpts(t, db, Message{ID: orphanID, From: 1, To: 2, ChatType: ChatPrivate, Content: "three", CreateTime: 6000}, AppendOptions{ClientID: true, Offline: true})
	if again.Duplicate || again.Msg.Seq != 3 || again.Msg.ID != orphanID {
		t.Fatalf("the orphan's id sent by its sender: %+v, want a new message (seq 3)", again)
	}
	dup := appendOpts(t, db, Message{ID: r.Msg.ID, From: 1, To: 2, ChatType: ChatPrivate, Content: "x"}, AppendOptions{ClientID: true})
	if !dup.Duplicate || dup.Online || !dup.Msg.Recalled || dup.Msg.Seq != 2 {
		t.Fatalf("a resend of the recalled message: %+v", dup)
	}
	h, _, err := db.History(1, 2, HistoryQuery{Count: 10})
	if err != nil || len(h) != 3 || h[0].Content != "one" || !h[1].Recalled || h[1].ID != r.Msg.ID || h[2].Content != "three" {
		t.Fatalf("history %+v %v", h, err)
	}
	if q := offline(t, db, 2, 1); len(q) != 1 || fmt.Sprint(seqs(q[0].Msgs)) != "[1 3]" {
		t.Fatalf("2's queue %+v, want seqs 1 and 3", q)
	}
}

// doc.go "The message log" and README (back up the data directory: the
// store and its log only make sense together): a store whose message log
// is missing (a copy or restore that left out messages/) holds references
// to lsns the log no longer has. Opening it must not reuse those lsns for
// new messages, which would make the old references name other
// conversations' records: conversation 1-2's history showing a message
// between 3 and 4 (so it did at 7ecb101).
func TestSection4_3_AStoreWithoutItsLogNeverShowsAnotherConversation(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	appendSync(t, db, private(1, 2, "between 1 and 2"), true)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, logDir)); err != nil {
		t.Fatal(err)
	}
	db, err := Open(dir, Options{})
	if err != nil {
		return // refused: the store says its log is missing
	}
	t.Cleanup(func() { _ = db.Close() })
	appendSync(t, db, private(3, 4, "for 4 only"), true)
	h, _, err := db.History(1, 2, HistoryQuery{Count: 10})
	for _, m := range h {
		if (m.From != 1 && m.From != 2) || m.Content == "for 4 only" {
			t.Fatalf("1-2's history holds %+v (from %d to %d): a reference reused by another conversation's record (err %v)", m.Content, m.From, m.To, err)
		}
	}
}
