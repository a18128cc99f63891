package router

import (
	"errors"

	"github.com/bytedance/sonic"

	"github.com/imgate/imgate/codec"
	"github.com/imgate/imgate/storage"
)

// conversation is a conversation named from the caller's side (PROTOCOL
// §7.1): a peer (private) or a group the caller is a member of.
type conversation struct {
	id    string // the peer's or the group's protocol id
	peer  uint64 // the peer's uid, or the gid
	group bool
}

// errBadConversation answers a conversation the caller may not name.
var errBadConversation = errors.New("router: no such conversation")

// resolve names the conversation of peerID or groupID, exactly one of
// which must be set: an unknown peer, a group that does not exist or that
// me is not in, is errBadConversation.
func (r *Router) resolve(me Identity, peerID, groupID string) (conversation, error) {
	switch {
	case (peerID == "") == (groupID == ""):
		return conversation{}, errBadConversation
	case peerID != "":
		if !ValidID(peerID) {
			return conversation{}, errBadConversation
		}
		u, err := r.db.UserByID(peerID)
		if errors.Is(err, storage.ErrNotFound) {
			return conversation{}, errBadConversation
		}
		return conversation{id: peerID, peer: u.UID}, err
	}
	if !ValidID(groupID) {
		return conversation{}, errBadConversation
	}
	g, err := r.db.GroupByID(groupID)
	if errors.Is(err, storage.ErrNotFound) {
		return conversation{}, errBadConversation
	}
	if err != nil {
		return conversation{}, err
	}
	ok, err := r.db.IsMember(g, me.UID)
	if err == nil && !ok {
		err = errBadConversation
	}
	return conversation{id: groupID, peer: g, group: true}, err
}

// ack serves cmd 21 (PROTOCOL §7.2): {"cmd":21,"peer"|"groupId","seq"}.
// Every connection of the caller delivers its pushes of the conversation
// up to seq, and the offline entries they cover go. No reply on success;
// a malformed ack, an unknown conversation or a seq past its end answers
// 10029 with command 22.
func (r *Router) ack(c *Context) error {
	me := c.Session.Identity()
	bad := &Error{Code: codec.CodeBadRequest, Command: codec.CmdAckResp}
	seq, ok, err := codec.ParseInt(c.Req.Seq)
	if !ok || err != nil || seq <= 0 {
		return bad
	}
	cv, err := r.resolve(me, c.Req.Peer, c.Req.Group())
	if errors.Is(err, errBadConversation) {
		return bad
	}
	if err != nil {
		return err
	}
	last, err := r.db.LastSeq(me.UID, cv.peer, cv.group)
	if err != nil {
		return err
	}
	if uint64(seq) > last {
		return bad
	}
	r.hub.Ack(me.UID, cv.id, cv.group, uint64(seq))
	return r.db.Ack(me.UID, cv.peer, cv.group, uint64(seq))
}

// ackLocal applies a well-formed ack to the connection that sent it, at
// once, on its loop: a connection that ends right after acknowledging
// does not have what it acknowledged queued. The ack's other work (the
// user's other connections, the offline queue, and its answer) follows
// in the request's turn (ack).
func ackLocal(s Session, req *codec.Request) {
	seq, ok, err := codec.ParseInt(req.Seq)
	if !ok || err != nil || seq <= 0 {
		return
	}
	switch peer, group := req.Peer, req.Group(); {
	case peer != "" && group == "":
		s.AckLocal(peer, false, uint64(seq))
	case group != "" && peer == "":
		s.AckLocal(group, true, uint64(seq))
	}
}

// Sync limits (PROTOCOL §7.3).
const (
	maxSyncConvs     = 100
	defaultSyncCount = 100
)

// syncEntry is one conversation of a cmd 23 request.
type syncEntry struct {
	Peer     string    `json:"peer"`
	GroupID  string    `json:"groupId"`
	AfterSeq codec.Int `json:"afterSeq"`
}

// sync serves cmd 23 (PROTOCOL §7.3): for each conversation named, its
// messages after afterSeq, in seq order, at most count each; "more" names
// the conversations that hold more, or that did not fit the connection's
// output room. Nothing is removed or marked read. A bad entry, or more
// than 100, answers 10029 with command 24 for the whole request.
func (r *Router) sync(c *Context) error {
	me := c.Session.Identity()
	bad := &Error{Code: codec.CodeBadRequest, Command: codec.CmdSyncResp}
	var entries []syncEntry
	if len(c.Req.Convs) == 0 || sonic.Unmarshal(c.Req.Convs, &entries) != nil || len(entries) == 0 || len(entries) > maxSyncConvs {
		return bad
	}
	count := defaultSyncCount
	if n, ok, err := codec.ParseInt(c.Req.Count); err != nil || (ok && n <= 0) {
		return bad
	} else if ok {
		count = int(min(n, int64(maxSyncConvs*defaultSyncCount)))
	}
	count = min(count, r.opts.PageCap)
	type target struct {
		cv    conversation
		after uint64
	}
	targets := make([]target, len(entries))
	for i, e := range entries {
		after, _, err := codec.ParseInt(e.AfterSeq)
		if err != nil || after < 0 {
			return bad
		}
		cv, err := r.resolve(me, e.Peer, e.GroupID)
		if errors.Is(err, errBadConversation) {
			return bad
		}
		if err != nil {
			return err
		}
		targets[i] = target{cv, uint64(after)}
	}

	room := replyRoom(c.Session)
	friends := append(make([]byte, 0, 1024), '{')
	groups := append(make([]byte, 0, 256), '{')
	more := append(make([]byte, 0, 64), '[')
	addMore := func(id string) {
		if len(more) > 1 {
			more = append(more, ',')
		}
		more = codec.AppendString(more, id)
	}
	used, full := 0, false
	for _, tg := range targets {
		if full {
			addMore(tg.cv.id)
			continue
		}
		q := storage.HistoryQuery{AfterSeq: tg.after, Count: count, MaxBytes: max(room-used, 1)}
		var msgs []storage.Message
		var has bool
		var err error
		if tg.cv.group {
			msgs, has, err = r.db.GroupHistory(tg.cv.peer, q)
		} else {
			msgs, has, err = r.db.History(me.UID, tg.cv.peer, q)
		}
		if err != nil {
			return err
		}
		dst := &friends
		if tg.cv.group {
			dst = &groups
		}
		mark := len(*dst)
		if len(*dst) > 1 {
			*dst = append(*dst, ',')
		}
		*dst = codec.AppendString(*dst, tg.cv.id)
		*dst = append(*dst, ':', '[')
		n := 0
		for i := range msgs {
			before := len(*dst)
			if n > 0 {
				*dst = append(*dst, ',')
			}
			*dst = appendMessage(*dst, &msgs[i])
			if used+len(*dst)-mark > room {
				*dst = (*dst)[:before]
				full = true
				break
			}
			n++
		}
		*dst = append(*dst, ']')
		if n == 0 && len(msgs) > 0 {
			*dst = (*dst)[:mark] // not one message fits: named in more only
		}
		used += len(*dst) - mark
		if has || n < len(msgs) {
			addMore(tg.cv.id)
		}
	}
	o := codec.BeginObject(make([]byte, 0, len(friends)+len(groups)+len(more)+64))
	o.Raw("friends", append(friends, '}'))
	o.Raw("groups", append(groups, '}'))
	o.Raw("more", append(more, ']'))
	o.String("userid", me.ID)
	c.Reply(codec.CodeSyncOK, codec.CmdSyncResp, o.End())
	return nil
}
