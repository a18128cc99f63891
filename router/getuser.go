package router

import (
	"bytes"
	"strings"

	"github.com/bytedance/sonic"

	"github.com/imgate/imgate/codec"
	"github.com/imgate/imgate/storage"
)

// Chat list limits (PROTOCOL §4.6).
const (
	maxFriendsPage   = 1000 // extras.count cap
	historyPerFriend = 10   // newest messages shown per friend
)

var errGetUser = &Error{Code: codec.CodeGetUserFailed, Command: codec.CmdGetUserResp}

// listExtras is the extras member of cmd 17 type 2.
type listExtras struct {
	PullType  codec.Int `json:"pullType"`
	SearchKey string    `json:"searchKey"`
	Offset    codec.Int `json:"offset"`
	Count     codec.Int `json:"count"`
}

// getUser serves cmd 17 (PROTOCOL §4.6): type 1 the contact list, type 2
// (the default) the chat list with counts and recent messages.
func (r *Router) getUser(c *Context) error {
	req, me := c.Req, c.Session.Identity()
	if u := req.User(); u != "" && u != me.ID {
		return &Error{Code: codec.CodeForbidden, Command: codec.CmdGetUserResp}
	}
	typ, ok, err := codec.ParseInt(req.Type)
	if err != nil {
		return errGetUser
	}
	if !ok {
		typ = 2
	}
	switch typ {
	case 1:
		return r.contactList(c, me)
	case 2:
		return r.chatList(c, me)
	}
	return errGetUser
}

// contactList serves type 1. The list is an array with no room to say
// "more": past the connection's output room it is cut short.
func (r *Router) contactList(c *Context, me Identity) error {
	room := replyRoom(c.Session)
	buf := append(make([]byte, 0, 256), '[')
	first := true
	var ferr error
	err := r.db.Contacts(me.UID, func(ct storage.Contact) bool {
		u, err := r.db.UserByUID(ct.Peer)
		if err != nil {
			ferr = err
			return false
		}
		mark := len(buf)
		if !first {
			buf = append(buf, ',')
		}
		o := codec.BeginObject(buf)
		o.String("avatar", u.Avatar)
		o.String("id", u.ID)
		o.String("nick", u.Nick)
		o.String("sign", u.Sign)
		o.String("status", r.status(u.UID))
		o.String("terminal", u.Terminal)
		o.Int("type", int64(u.Type))
		buf = o.End()
		if !first && len(buf) > room {
			buf = buf[:mark]
			return false
		}
		first = false
		return true
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	c.Reply(codec.CodeSuccess, codec.CmdGetUserResp, append(buf, ']'))
	return nil
}

func (r *Router) status(uid uint64) string {
	if r.hub.Online(uid) {
		return "online"
	}
	return "offline"
}

func (r *Router) chatList(c *Context, me Identity) error {
	var ex listExtras
	if raw := bytes.TrimSpace(c.Req.Extras); len(raw) > 0 && string(raw) != "null" {
		if err := sonic.Unmarshal(raw, &ex); err != nil {
			return errGetUser
		}
	}
	pull, ok, err := codec.ParseInt(ex.PullType)
	if !ok || err != nil || pull < 1 || pull > 3 {
		return errGetUser
	}
	offset, _, err := codec.ParseInt(ex.Offset)
	if err != nil || offset < 0 {
		return errGetUser
	}
	count, ok, err := codec.ParseInt(ex.Count)
	if err != nil || count < 0 {
		return errGetUser
	}
	asked := ok && count > 0 && count <= maxFriendsPage
	if !asked {
		count = maxFriendsPage
	}
	self, err := r.db.UserByUID(me.UID)
	if err != nil {
		return err
	}
	now := r.now().UnixMilli()
	since := now - RecentWindow.Milliseconds()
	key := strings.ToLower(ex.SearchKey)

	room := replyRoom(c.Session) - 512 // the list's counts and profile
	friends := append(make([]byte, 0, 1024), '[')
	n, skipped := int64(0), int64(0)
	more := false
	var ferr error
	err = r.db.Contacts(me.UID, func(ct storage.Contact) bool {
		if pull == 3 && ct.LastContact < since {
			return false // most recent first: everything after is older
		}
		if pull == 2 && !ct.Pending {
			return true
		}
		u, err := r.db.UserByUID(ct.Peer)
		if err != nil {
			ferr = err
			return false
		}
		if key != "" && !strings.Contains(strings.ToLower(u.Nick), key) && !strings.Contains(strings.ToLower(u.ID), key) {
			return true
		}
		if skipped < offset {
			skipped++
			return true
		}
		if n == count {
			more = !asked // held back by the cap, not by the client's count
			return false
		}
		mark := len(friends)
		if n > 0 {
			friends = append(friends, ',')
		}
		var fit bool
		if friends, fit, err = r.appendFriend(friends, me, &u, &ct, room-len(friends), n == 0); err != nil {
			ferr = err
			return false
		}
		if !fit {
			friends, more = friends[:mark], true
			return false
		}
		n++
		return true
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	friends = append(friends, ']')

	counts, err := r.db.Counts(me.UID)
	if err != nil {
		return err
	}
	recent, err := r.db.RecentCount(me.UID, since)
	if err != nil {
		return err
	}
	o := codec.BeginObject(make([]byte, 0, len(friends)+256))
	o.Int("allContactsNum", int64(counts.Contacts))
	o.String("avatar", self.Avatar)
	o.Raw("friends", friends)
	o.Int("lastedContactsNum", int64(recent))
	if more {
		o.Raw("more", []byte("true"))
	}
	o.String("nickname", self.Nick)
	o.Int("pendingReplyNum", int64(counts.Pending))
	o.Int("pullType", pull)
	o.String("userId", me.ID)
	c.Reply(codec.CodeSuccess, codec.CmdGetUserResp, o.End())
	return nil
}

// appendFriend appends one chat-list entry: the peer, their status, the
// owner's unread count and the newest messages, oldest first, within room
// bytes (PROTOCOL §4.6: the list fits the connection's output cap). fit is
// false, and dst unchanged, when the entry does not fit; a first entry
// (first) always does, keeping as many of the newest messages as fit.
func (r *Router) appendFriend(dst []byte, me Identity, u *storage.User, ct *storage.Contact, room int, first bool) (_ []byte, fit bool, err error) {
	msgs, _, err := r.db.History(me.UID, u.UID, storage.HistoryQuery{Desc: true, Count: historyPerFriend})
	if err != nil {
		return dst, false, err
	}
	mark := len(dst)
	// lastMessageTime is the newest message's time, 0 when they never
	// wrote: an assignment refreshes the contact's recency (the list's
	// order, pullType 3) but is not a message (PROTOCOL §4.6).
	var last int64
	if len(msgs) > 0 {
		last = msgs[0].CreateTime
	}
	entry := func(hist []byte) []byte {
		o := codec.BeginObject(dst[:mark])
		o.String("avatar", u.Avatar)
		o.Raw("historyMessage", hist)
		o.Int("lastMessageTime", last)
		o.String("nickname", u.Nick)
		o.String("status", r.status(u.UID))
		o.Int("unReadNum", int64(ct.Unread))
		o.String("userId", u.ID)
		return o.End()
	}
	dst = entry([]byte("[]"))
	left := room - (len(dst) - mark)
	if left < 0 && !first {
		return dst[:mark], false, nil
	}
	// msgs is newest first: keep the newest that fit, then list them
	// oldest first.
	enc := make([][]byte, 0, len(msgs))
	for i := range msgs {
		m := appendMessage(nil, &msgs[i])
		if left -= len(m) + 1; left < 0 {
			if !first {
				return dst[:mark], false, nil
			}
			break
		}
		enc = append(enc, m)
	}
	if len(enc) == 0 {
		return dst, true, nil
	}
	hist := append(make([]byte, 0, 2+room-left), '[')
	for i := len(enc) - 1; i >= 0; i-- {
		if i != len(enc)-1 {
			hist = append(hist, ',')
		}
		hist = append(hist, enc[i]...)
	}
	return entry(append(hist, ']')), true, nil
}
