package router

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/imgate/imgate/codec"
	"github.com/imgate/imgate/storage"
	"github.com/imgate/imgate/storage/pebble"
)

type offlineHub struct{}

func (offlineHub) Online(uint64) bool                                    { return false }
func (offlineHub) Disconnect(uint64, uint16, string) int                 { return 0 }
func (offlineHub) DisconnectTerminal(uint64, string, uint16, string) int { return 0 }
func (offlineHub) Deliver(uint64, []byte, Session, *Tracker) int         { return 0 }
func (offlineHub) Ack(uint64, string, bool, uint64, Session)             {}

// agentWithContacts builds an agent with n visitor contacts, each of whom
// wrote once; every other one got an answer (n/2 pending).
func agentWithContacts(b *testing.B, n int) (*Router, storage.User) {
	b.Helper()
	db, err := pebble.Open(b.TempDir(), pebble.Options{})
	if err != nil {
		b.Fatal(err)
	}
	r, err := New(db, Options{})
	if err != nil {
		b.Fatal(err)
	}
	r.SetHub(offlineHub{})
	b.Cleanup(func() { _ = r.Close(context.Background()); _ = db.Close() })
	agent, _ := db.Register(storage.Registration{User: storage.User{ID: "agent", Type: storage.UserAgent}, Now: 1})
	var wg sync.WaitGroup
	now := time.Now().UnixMilli()
	for i := 0; i < n; i++ {
		v, err := db.Register(storage.Registration{User: storage.User{ID: fmt.Sprintf("visitor_%d", i), Nick: fmt.Sprint("Visitor ", i)}, Now: 1})
		if err != nil {
			b.Fatal(err)
		}
		msgs := []storage.Message{{From: v.UID, To: agent.UID, FromID: v.ID, ToID: agent.ID, Content: "question"}}
		if i%2 == 0 {
			msgs = append(msgs, storage.Message{From: agent.UID, To: v.UID, FromID: agent.ID, ToID: v.ID, Content: "answer"})
		}
		for _, m := range msgs {
			_, _ = rand.Read(m.ID[:])
			// All within the last 48 hours: the worst case for the
			// recent-contacts count.
			m.ChatType, m.CreateTime = storage.ChatPrivate, now-int64(n-i)
			wg.Add(1)
			if err := db.AppendPrivate(m, storage.AppendOptions{Visitor: v.UID}, func(res storage.AppendResult) {
				if res.Err != nil {
					b.Error(res.Err)
				}
				wg.Done()
			}); err != nil {
				b.Fatal(err)
			}
		}
	}
	wg.Wait()
	return r, agent
}

// BenchmarkChatInfo: PROTOCOL §1.3 for an agent with 10 000 contacts.
func BenchmarkChatInfo(b *testing.B) {
	r, _ := agentWithContacts(b, 10000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		info, err := r.ChatInfo(ChatInfoRequest{From: "agent", To: "visitor_7"})
		if err != nil || info.AllContacts != 10000 || info.PendingReply != 5000 || info.LastedContacts != 10000 {
			b.Fatalf("%+v %v", info, err)
		}
	}
}

// BenchmarkChatListPending: cmd 17 type 2 pullType 2 (the 5 000 awaiting a
// reply, each with its newest messages) for an agent with 10 000 contacts.
func BenchmarkChatListPending(b *testing.B) {
	r, agent := agentWithContacts(b, 10000)
	payload := []byte(`{"cmd":17,"type":2,"extras":{"pullType":2,"count":1000}}`)
	s := &pushSession{id: Identity{UID: agent.UID, ID: agent.ID, Type: agent.Type}}
	d := codec.AcquireDecoder()
	defer codec.ReleaseDecoder(d)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := d.Decode(payload); err != nil {
			b.Fatal(err)
		}
		c := &Context{Session: s, Req: &d.Req}
		if err := r.getUser(c); err != nil || len(c.out) < 1000 {
			b.Fatalf("%v (%d bytes)", err, len(c.out))
		}
	}
}
