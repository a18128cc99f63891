package router

import (
	"errors"

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
