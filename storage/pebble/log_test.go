package pebble

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// rawOpen opens a store's Pebble directory, or its message log, without
// the store: what an older version wrote, or a crash left, is made here.
func rawOpen(t *testing.T, dir string) *pebble.DB {
	t.Helper()
	pdb, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	return pdb
}

// logRecords returns the lsns and contents of the message log's records.
func logRecords(t *testing.T, ldb *pebble.DB) []string {
	t.Helper()
	it, err := ldb.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixLog), UpperBound: []byte(prefixLogEnd)})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []string
	for ok := it.First(); ok; ok = it.Next() {
		m, err := decodeMessage(it.Value())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%d:%s", binary.BigEndian.Uint64(it.Key()[2:]), m.Content))
	}
	return out
}

// PROTOCOL §4.3 (what is stored), doc.go "Changing the layout": a store
// written before the message log, its records inside h| and its
// idempotency records under d|from|id, still reads, deduplicates, recalls
// and queues them, and appends after them with references to the log.
func TestSection4_3_HistoryWrittenBeforeTheLogStaysReadable(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	ids := [][16]byte{msgID(), msgID(), msgID()}
	for i, id := range ids {
		appendSync(t, db, Message{ID: id, From: 1, To: 2, ChatType: ChatPrivate, Content: fmt.Sprint("old", i+1), CreateTime: 1000 + int64(i)}, true)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Downgrade: each reference becomes its record, each D| its d|, and
	// the log is emptied.
	pdb, ldb := rawOpen(t, dir), rawOpen(t, filepath.Join(dir, logDir))
	conv := privateConv(1, 2)
	for seq := uint64(1); seq <= 3; seq++ {
		ref, err := getCopy(pdb, keyHistory(conv, seq))
		if err != nil || len(ref) != 9 || ref[0] != messageRefV2 {
			t.Fatalf("h| %d is %x (%v), want a reference", seq, ref, err)
		}
		rec, err := getCopy(ldb, keyLog(binary.BigEndian.Uint64(ref[1:])))
		if err != nil {
			t.Fatal(err)
		}
		_ = pdb.Set(keyHistory(conv, seq), rec, nil)
		_ = ldb.Delete(keyLog(binary.BigEndian.Uint64(ref[1:])), nil)
	}
	for i, id := range ids {
		if _, err := getCopy(pdb, keyDedup(1, id)); err != nil {
			t.Fatal(err)
		}
		// conv, seq, queued (all three were)
		_ = pdb.Set(keyDedupV1(1, id), append(keyHistory(conv, uint64(i+1))[2:], 1), nil)
		_ = pdb.Delete(keyDedup(1, id), nil)
	}
	_ = pdb.Delete(keyLogEnd, nil)
	if err := errors.Join(pdb.Close(), ldb.Close()); err != nil {
		t.Fatal(err)
	}

	db = openTest(t, dir)
	if dup := appendSync(t, db, Message{ID: ids[1], From: 1, To: 2, ChatType: ChatPrivate, Content: "again"}, true); !dup.Duplicate || dup.Msg.Seq != 2 || dup.Msg.Content != "old2" {
		t.Fatalf("a repeat of an id stored before the log: %+v", dup)
	}
	recalled := make(chan error, 1)
	if err := db.Recall(1, ids[2], 0, func(_ Message, err error) { recalled <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-recalled; err != nil {
		t.Fatalf("recall of a message stored before the log: %v", err)
	}
	appendSync(t, db, Message{ID: msgID(), From: 2, To: 1, ChatType: ChatPrivate, Content: "new", CreateTime: 2000}, true)
	h, _, err := db.History(1, 2, HistoryQuery{Count: 10})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range h {
		got = append(got, fmt.Sprintf("%d:%s:%v", m.Seq, m.Content, m.Recalled))
	}
	if fmt.Sprint(got) != "[1:old1:false 2:old2:false 3::true 4:new:false]" {
		t.Fatalf("history %v", got)
	}
	if q := offline(t, db, 2, 1); len(q) != 1 || fmt.Sprint(seqs(q[0].Msgs)) != "[1 2]" {
		t.Fatalf("2's queue (the recalled 3 left it) %+v", q)
	}
	if from, _, err := db.History(1, 2, HistoryQuery{Count: 10, Begin: 1001, End: 1001}); err != nil || len(from) != 1 || from[0].Seq != 2 {
		t.Fatalf("a time window over records before the log: %+v %v", from, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	ldb = rawOpen(t, filepath.Join(dir, logDir))
	defer ldb.Close()
	if got := logRecords(t, ldb); fmt.Sprint(got) != "[1:new]" {
		t.Fatalf("the log holds %v, want only the new message", got)
	}
}

// doc.go "The message log": a store whose log is missing or behind it (a
// copy without messages/, or another copy's) refuses to open, saying so:
// new messages would take lsns its history refers to.
func TestSection4_3_AStoreRefusesALogBehindIt(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	appendSync(t, db, Message{ID: msgID(), From: 1, To: 2, ChatType: ChatPrivate, Content: "one"}, false)
	appendSync(t, db, Message{ID: msgID(), From: 1, To: 2, ChatType: ChatPrivate, Content: "two"}, false)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	ldb := rawOpen(t, filepath.Join(dir, logDir))
	_ = ldb.Delete(keyLog(2), nil)
	if err := ldb.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := Open(dir, Options{})
	if err == nil {
		_ = db.Close()
		t.Fatal("opened a store whose log ends before its references")
	}
	if want := "ends at record 1 but the store refers to records up to 2"; !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), filepath.Join(dir, logDir)) {
		t.Fatalf("error %q: want it to name the log and say %q", err, want)
	}
	if err := os.RemoveAll(filepath.Join(dir, logDir)); err != nil {
		t.Fatal(err)
	}
	if db, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "ends at record 0") {
		if db != nil {
			_ = db.Close()
		}
		t.Fatalf("a store without its log opened: %v", err)
	}
}

// PROTOCOL §4.3 (nothing acked is lost): a batch's records are committed
// before their references. A crash between the two leaves records nothing
// refers to (their messages were never acked): the store ignores them and
// its next records come after them. A reference whose record is missing
// is reported as corrupt, never as a message.
func TestSection4_3_LogRecordsAheadOfTheirReferences(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	appendSync(t, db, Message{ID: msgID(), From: 1, To: 2, ChatType: ChatPrivate, Content: "one"}, false)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	ldb := rawOpen(t, filepath.Join(dir, logDir))
	for lsn := uint64(2); lsn <= 3; lsn++ {
		orphan := Message{ID: storeID(5000, lsn), From: 1, To: 2, ChatType: ChatPrivate, Content: "never acked", Seq: 2, CreateTime: 5000}
		_ = ldb.Set(keyLog(lsn), encodeMessage(&orphan), nil)
	}
	if err := ldb.Close(); err != nil {
		t.Fatal(err)
	}

	db = openTest(t, dir)
	appendSync(t, db, Message{ID: msgID(), From: 2, To: 1, ChatType: ChatPrivate, Content: "two"}, false)
	h, _, err := db.History(1, 2, HistoryQuery{Count: 10})
	if err != nil || len(h) != 2 || h[0].Content != "one" || h[1].Content != "two" || h[1].Seq != 2 {
		t.Fatalf("history %+v %v", h, err)
	}
	// The orphans' ids were never given to anyone; a guess of one finds
	// nothing, though the log has a record of 1's with it.
	recalled := make(chan error, 1)
	if err := db.Recall(1, storeID(5000, 2), 0, func(_ Message, err error) { recalled <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-recalled; !errors.Is(err, ErrNotFound) {
		t.Fatalf("recall of an unreferenced record: %v, want ErrNotFound", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	pdb, ldb := rawOpen(t, dir), rawOpen(t, filepath.Join(dir, logDir))
	if got := logRecords(t, ldb); fmt.Sprint(got) != "[1:one 2:never acked 3:never acked 4:two]" {
		t.Fatalf("log %v: the new record must follow the orphans", got)
	}
	_ = ldb.Delete(keyLog(1), nil) // a reference without its record
	if err := errors.Join(pdb.Close(), ldb.Close()); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, dir)
	if h, _, err := db.History(1, 2, HistoryQuery{Count: 10}); !errors.Is(err, errCorrupt) {
		t.Fatalf("history over a reference without its record: %+v, %v; want errCorrupt", h, err)
	}
}

// PROTOCOL §4.1: a message whose sender chose no id gets one the store
// makes from its lsn, which finds it (resend, recall) without an
// idempotency record: the store writes none. A client's id gets one.
func TestSection4_1_StoreMadeIDsNeedNoIdempotencyRecord(t *testing.T) {
	db := openTest(t, t.TempDir())
	server := appendOpts(t, db, Message{From: 1, To: 2, ChatType: ChatPrivate, Content: "a", CreateTime: 7000}, AppendOptions{Offline: true})
	if server.Msg.ID != storeID(7000, 1) {
		t.Fatalf("id %x, want storeID(7000, 1)", server.Msg.ID)
	}
	client := appendSync(t, db, Message{ID: msgID(), From: 1, To: 2, ChatType: ChatPrivate, Content: "b"}, true)
	var keys []string
	for _, p := range []string{prefixDedup, prefixDedupV1} {
		if err := db.scanKeys(p, p[:1]+"}", func(k, v []byte) error {
			keys = append(keys, fmt.Sprintf("%s%x=%x", k[:2], k[2:], v))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	want := fmt.Sprintf("[D|%x%016x=%016x]", client.Msg.ID, 1, 2)
	if fmt.Sprint(keys) != want {
		t.Fatalf("idempotency records %v, want %v (the client's id only)", keys, want)
	}
	if dup := appendSync(t, db, Message{ID: server.Msg.ID, From: 1, To: 2, ChatType: ChatPrivate, Content: "again"}, false); !dup.Duplicate || dup.Online || dup.Msg.Content != "a" {
		t.Fatalf("a resend of the store's id: %+v", dup)
	}
}

// PROTOCOL §4.5 and §4.3: a recall writes its marker to history in the
// batch that removes the queue entries and the unread count, so no crash
// can leave one without the other; the record in the log is overwritten
// with the marker after that batch commits. A crash before that overwrite
// leaves the content in a record nothing refers to: the message reads as
// recalled, a retry of the recall is told so, a resend gets the first ack.
func TestSection4_5_RecallIsOneCommitThenTheLogIsScrubbed(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	r := appendOpts(t, db, Message{From: 1, To: 2, ChatType: ChatPrivate, Content: "secret", CreateTime: 1000}, AppendOptions{Offline: true})
	recall := func(db *DB) error {
		ch := make(chan error, 1)
		if err := db.Recall(1, r.Msg.ID, 0, func(_ Message, err error) { ch <- err }); err != nil {
			t.Fatal(err)
		}
		return <-ch
	}
	if err := recall(db); err != nil {
		t.Fatal(err)
	}
	hv, err := db.get(keyHistory(privateConv(1, 2), 1))
	if err != nil || hv[0] != messageRecordV1 || hv[2] != flagRecalled|flagQueued {
		t.Fatalf("history value %x (%v): want the marker, recalled and queued", hv, err)
	}
	if got := logRecords(t, db.ldb); fmt.Sprint(got) != "[1:]" {
		t.Fatalf("the log holds %v after the recall, want the marker", got)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// The overwrite lost in a crash: the record keeps its content.
	ldb := rawOpen(t, filepath.Join(dir, logDir))
	_ = ldb.Set(keyLog(1), encodeMessage(&r.Msg), pebble.Sync)
	if err := ldb.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, dir)
	if err := recall(db); !errors.Is(err, ErrRecalled) {
		t.Fatalf("a retry of the recall: %v, want ErrRecalled", err)
	}
	h, _, err := db.History(1, 2, HistoryQuery{Count: 10})
	if err != nil || len(h) != 1 || !h[0].Recalled || h[0].Content != "" {
		t.Fatalf("history %+v %v", h, err)
	}
	if c, err := db.Contact(2, 1); err != nil || c.Unread != 0 || len(offline(t, db, 2, 1)) != 0 {
		t.Fatalf("2's unread %d (%v) or queue left by the recall", c.Unread, err)
	}
	if dup := appendOpts(t, db, Message{ID: r.Msg.ID, From: 1, To: 2, ChatType: ChatPrivate, Content: "x"}, AppendOptions{ClientID: true}); !dup.Duplicate || dup.Online {
		t.Fatalf("a resend after the recall: %+v, want the first ack (queued)", dup)
	}
}
