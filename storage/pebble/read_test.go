package pebble

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// storage/doc.go, migration recent-v1: contact records written before the
// last message was kept (v2) get it, and the o| index of conversations.
func TestSection7_4_RecentMigrated(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	const owner = 10
	for peer := uint64(1); peer <= 3; peer++ {
		for i := int64(0); i < 2; i++ {
			appendOpts(t, db, Message{ID: msgID(), From: peer, To: owner, ChatType: ChatPrivate, Content: "m", CreateTime: 1000*int64(peer) + i}, AppendOptions{})
		}
	}
	touchSync(t, db, 4, owner, 9000, TouchOptions{}) // a contact, no message
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Downgrade: v2 records, no o| keys, no marker.
	pdb, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	for peer := uint64(1); peer <= 4; peer++ {
		raw, err := getCopy(pdb, keyContact(owner, peer))
		if err != nil {
			t.Fatal(err)
		}
		c, err := decodeContact(peer, raw)
		if err != nil {
			t.Fatal(err)
		}
		v2 := encodeContact(&c)[:0]
		v2 = append(v2, contactRecordV2, raw[1])
		v2 = append(v2, raw[2:10]...)
		v2 = appendUvarints(v2, c.Unread, c.ReadSeq)
		_ = pdb.Set(keyContact(owner, peer), v2, nil)
		_ = pdb.Delete(keyConv(owner, c.LastMessage, peer), nil)
	}
	_ = pdb.Delete([]byte(prefixMigrated+"recent-v1"), nil)
	if err := pdb.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, dir)
	var got []string
	err = db.Conversations(owner, 0, func(c Contact) bool {
		got = append(got, fmt.Sprintf("%d@%d#%d", c.Peer, c.LastMessage, c.LastSeq))
		return true
	})
	if err != nil || fmt.Sprint(got) != "[3@3001#2 2@2001#2 1@1001#2]" {
		t.Fatalf("conversations after the migration: %v %v", got, err)
	}
}

func appendUvarints(b []byte, vs ...uint64) []byte {
	for _, v := range vs {
		b = binary.AppendUvarint(b, v)
	}
	return b
}
