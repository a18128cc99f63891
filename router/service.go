package router

import (
	"errors"
	"fmt"
	"time"

	"github.com/imgate/imgate/storage"
)

// RecentWindow is how far back a contact counts as recent (PROTOCOL §1.3
// lastedContactsNum, §4.6 pullType 3).
const RecentWindow = 48 * time.Hour

// Partner is the user object getReceiver returns (PROTOCOL §1.2).
type Partner struct {
	User   storage.User
	Online bool
}

// GetReceiver registers the sender like InitUser and returns their chat
// partner (PROTOCOL §1.2): the named receiver, or for a visitor without
// one an assigned agent. It returns ErrReceiverBusy when there is no one,
// and a *FieldError for malformed input.
func (r *Router) GetReceiver(req InitUserRequest) (Partner, error) {
	res, err := r.register(req)
	if err != nil {
		return Partner{}, err
	}
	me := res.User
	now := r.now().UnixMilli()
	if req.ReceiverID != "" {
		p, err := r.db.UserByID(req.ReceiverID)
		if errors.Is(err, storage.ErrNotFound) {
			return Partner{}, ErrReceiverBusy
		}
		if err != nil {
			return Partner{}, err
		}
		if p.UID != me.UID {
			var visitor uint64
			if me.Type == storage.UserVisitor && p.Type != storage.UserVisitor {
				visitor = me.UID
			}
			if err := r.touch(me.UID, p.UID, now, visitor); err != nil {
				return Partner{}, err
			}
		}
		return Partner{User: p, Online: r.hub.Online(p.UID)}, nil
	}
	if me.Type != storage.UserVisitor {
		return Partner{}, &FieldError{Field: "receiverId", Msg: "receiverId is required unless the sender is a visitor (type 0)"}
	}
	// One assignment at a time per visitor: concurrent calls agree.
	mu := &r.assignLocks[me.UID%uint64(len(r.assignLocks))]
	mu.Lock()
	defer mu.Unlock()
	pick, err := r.assign(me.UID)
	if err != nil {
		return Partner{}, err
	}
	p, err := r.db.UserByUID(pick)
	if err != nil {
		return Partner{}, err
	}
	if err := r.touch(me.UID, pick, now, me.UID); err != nil {
		return Partner{}, err
	}
	r.assigned(pick, now)
	return Partner{User: p, Online: true}, nil
}

// assign picks a visitor's partner: the agent or consultant they last
// talked to if online; else the online agent with the fewest visitors
// awaiting a reply, the least recently assigned first on a tie.
func (r *Router) assign(visitor uint64) (uint64, error) {
	last, err := r.db.LastPartner(visitor)
	if err != nil {
		return 0, err
	}
	if last != 0 && r.hub.Online(last) {
		return last, nil
	}
	var best uint64
	var bestPending uint64
	var bestAssigned int64
	for uid, assignedAt := range r.onlineAgents() {
		n, err := r.db.Counts(uid)
		if err != nil {
			return 0, err
		}
		if best == 0 || n.Pending < bestPending ||
			(n.Pending == bestPending && (assignedAt < bestAssigned || (assignedAt == bestAssigned && uid < best))) {
			best, bestPending, bestAssigned = uid, n.Pending, assignedAt
		}
	}
	if best == 0 {
		return 0, ErrReceiverBusy
	}
	return best, nil
}

// touch makes a and b contacts with activity now and waits until durable.
func (r *Router) touch(a, b uint64, now int64, visitor uint64) error {
	partner := b
	if visitor == b {
		partner = a
	}
	if visitor == 0 {
		partner = 0
	}
	return r.wait(func(done func(error)) error { return r.db.Touch(a, b, now, visitor, partner, done) })
}

// wait runs an asynchronous storage operation and waits for its commit.
func (r *Router) wait(submit func(done func(error)) error) error {
	ch := make(chan error, 1)
	if err := submit(func(err error) { ch <- err }); err != nil {
		return err
	}
	return <-ch
}

// ChatInfoRequest is the body of POST /im/vanke/chatInfo (PROTOCOL §1.3).
type ChatInfoRequest struct {
	From, To     string
	Op           int
	IsNewMember  int
	IsConcurrent int
}

// ChatInfo is its answer: every count from current state.
type ChatInfo struct {
	From, To       string
	PendingReply   uint64
	LastedContacts int
	AllContacts    uint64
	Unread         uint64
}

// ChatInfo applies op to from's chat list and returns the counts
// (PROTOCOL §1.3). The server counts messages itself; op only marks
// conversations read, so calling it after every push never double-counts.
func (r *Router) ChatInfo(req ChatInfoRequest) (ChatInfo, error) {
	users := [2]storage.User{}
	for i, f := range [...]struct{ name, id string }{{"from", req.From}, {"to", req.To}} {
		if f.id == "" {
			return ChatInfo{}, &FieldError{Field: f.name, Msg: f.name + " is required"}
		}
		u, err := r.db.UserByID(f.id)
		if errors.Is(err, storage.ErrNotFound) {
			return ChatInfo{}, &FieldError{Field: f.name, Msg: fmt.Sprintf("%s %q is not a registered user", f.name, f.id)}
		}
		if err != nil {
			return ChatInfo{}, err
		}
		users[i] = u
	}
	from, to := users[0], users[1]
	now := r.now().UnixMilli()
	switch req.Op {
	case 1:
		if _, err := r.db.Contact(from.UID, to.UID); errors.Is(err, storage.ErrNotFound) && from.UID != to.UID {
			if err := r.touch(from.UID, to.UID, now, 0); err != nil {
				return ChatInfo{}, err
			}
		} else if err != nil {
			return ChatInfo{}, err
		}
		if req.IsConcurrent == 1 {
			if err := r.markRead(from.UID, to.UID); err != nil {
				return ChatInfo{}, err
			}
		}
	case 2:
		if err := r.markRead(from.UID, to.UID); err != nil {
			return ChatInfo{}, err
		}
	case 0:
	default:
		return ChatInfo{}, &FieldError{Field: "op", Msg: "op must be 1 (message pushed) or 2 (chat opened)"}
	}
	return r.chatInfo(from, to, now)
}

func (r *Router) markRead(owner, peer uint64) error {
	return r.wait(func(done func(error)) error { return r.db.MarkRead(owner, peer, done) })
}

func (r *Router) chatInfo(from, to storage.User, now int64) (ChatInfo, error) {
	info := ChatInfo{From: from.ID, To: to.ID}
	c, err := r.db.Contact(from.UID, to.UID)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return ChatInfo{}, err
	}
	info.Unread = c.Unread
	n, err := r.db.Counts(from.UID)
	if err != nil {
		return ChatInfo{}, err
	}
	info.PendingReply, info.AllContacts = n.Pending, n.Contacts
	if info.LastedContacts, err = r.db.RecentCount(from.UID, now-RecentWindow.Milliseconds()); err != nil {
		return ChatInfo{}, err
	}
	return info, nil
}
