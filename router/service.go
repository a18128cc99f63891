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
// and a *FieldError for malformed input; either way nothing is written.
func (r *Router) GetReceiver(req InitUserRequest) (Partner, error) {
	if err := validateUser(&req); err != nil {
		return Partner{}, err
	}
	if req.ReceiverID != "" {
		return r.named(req)
	}
	if req.Type != storage.UserVisitor {
		return Partner{}, &FieldError{Field: "receiverId", Msg: "receiverId is required unless the sender is a visitor (type 0)"}
	}
	// One assignment at a time, on every gateway of the store: each reads
	// the load the one before left, and two calls for one visitor agree.
	// An assignment holds the lock for one commit (a few ms), which bounds
	// assignments to a few hundred per second: far above what a desk sees.
	unlock, err := r.db.LockAssignment()
	if err != nil {
		return Partner{}, err
	}
	defer unlock()
	var known uint64 // the visitor's uid, if registered before
	switch u, err := r.db.UserByID(req.SenderID); {
	case err == nil:
		known = u.UID
	case !errors.Is(err, storage.ErrNotFound):
		return Partner{}, err
	}
	pick, fresh, err := r.assign(known)
	if err != nil {
		return Partner{}, err
	}
	p, err := r.db.UserByUID(pick)
	if err != nil {
		return Partner{}, err
	}
	res, err := r.register(req)
	if err != nil {
		return Partner{}, err
	}
	opts := storage.TouchOptions{Visitor: res.User.UID, Assigned: fresh}
	if err := r.touch(res.User.UID, pick, r.now().UnixMilli(), opts); err != nil {
		return Partner{}, err
	}
	return Partner{User: p, Online: true}, nil
}

// named is GetReceiver with a receiverId: that user, made a contact.
func (r *Router) named(req InitUserRequest) (Partner, error) {
	p, err := r.db.UserByID(req.ReceiverID)
	if errors.Is(err, storage.ErrNotFound) {
		return Partner{}, ErrReceiverBusy
	}
	if err != nil {
		return Partner{}, err
	}
	res, err := r.register(req)
	if err != nil {
		return Partner{}, err
	}
	me := res.User
	if p.UID != me.UID {
		var opts storage.TouchOptions
		if me.Type == storage.UserVisitor && p.Type != storage.UserVisitor {
			opts.Visitor = me.UID
		}
		if err := r.touch(me.UID, p.UID, r.now().UnixMilli(), opts); err != nil {
			return Partner{}, err
		}
	}
	return Partner{User: p, Online: r.hub.Online(p.UID)}, nil
}

// assign picks a visitor's partner (PROTOCOL §1.2): the agent or
// consultant they last talked to if online; else (fresh) the online agent
// with the fewest visitors waiting for them (storage's Contact.Waiting:
// visitors assigned or writing last, not answered since; colleagues and
// consultants never count), on a tie the least recently assigned, then the
// lowest uid. visitor is 0 for one never registered. Closing connections
// do not count as online.
func (r *Router) assign(visitor uint64) (pick uint64, fresh bool, err error) {
	if visitor != 0 {
		last, err := r.db.LastPartner(visitor)
		if err != nil {
			return 0, false, err
		}
		if last != 0 && r.hub.Online(last) {
			return last, false, nil
		}
	}
	var best storage.ContactCounts
	for _, uid := range r.onlineAgents() {
		if uid == visitor {
			continue // an agent registering as a visitor is not their own agent
		}
		n, err := r.db.Counts(uid)
		if err != nil {
			return 0, false, err
		}
		if pick == 0 || n.Waiting < best.Waiting || (n.Waiting == best.Waiting && n.Assigned < best.Assigned) {
			pick, best = uid, n // agents come in uid order: the lowest wins the last tie
		}
	}
	if pick == 0 {
		return 0, false, ErrReceiverBusy
	}
	return pick, true, nil
}

// touch makes a and b contacts with activity now and waits until durable.
func (r *Router) touch(a, b uint64, now int64, opts storage.TouchOptions) error {
	return r.wait(func(done func(error)) error { return r.db.Touch(a, b, now, opts, done) })
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
		// Nobody is their own contact (PROTOCOL §4.6): from == to only
		// reads the counts.
		if _, err := r.db.Contact(from.UID, to.UID); errors.Is(err, storage.ErrNotFound) {
			if from.UID != to.UID {
				if err := r.touch(from.UID, to.UID, now, storage.TouchOptions{}); err != nil {
					return ChatInfo{}, err
				}
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
