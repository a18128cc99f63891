package router

import (
	"encoding/hex"
	"errors"

	"github.com/imgate/imgate/codec"
	"github.com/imgate/imgate/storage"
)

// DefaultMaxGroupMembers is a group's member cap (PROTOCOL §5).
const DefaultMaxGroupMembers = 2000

// join serves cmd 7 (PROTOCOL §5): store the membership, answer 10011 with
// {group, result}, tell the other live members (command 9).
func (r *Router) join(c *Context) error {
	me, gid := c.Session.Identity(), c.Req.Group()
	if !ValidID(gid) {
		return &Error{Code: codec.CodeJoinFailed, Command: codec.CmdJoinResp}
	}
	var g uint64
	var result int
	err := r.wait(func(done func(error)) error {
		return r.db.Join(gid, me.UID, r.now().UnixMilli(), r.opts.MaxGroupMembers, func(id uint64, res int, err error) {
			g, result = id, res
			done(err)
		})
	})
	if err != nil {
		return err
	}
	o := codec.BeginObject(c.scratch[:0])
	o.String("group", gid)
	o.Int("result", int64(result))
	data := append([]byte(nil), o.End()...)
	if result != storage.JoinOK {
		c.Reply(codec.CodeJoinFailed, codec.CmdJoinResp, data)
		return nil
	}
	c.Reply(codec.CodeJoinOK, codec.CmdJoinResp, data)
	if r.cluster != nil {
		r.cluster.Membership(me.UID, g, true)
	}
	r.notifyMembers(g, gid, me, codec.CmdJoinNotify)
	return nil
}

// exit serves cmd 29 (ext, PROTOCOL §5): leave the group, answer 10027,
// tell the remaining live members (command 10) if the caller was one.
func (r *Router) exit(c *Context) error {
	me, gid := c.Session.Identity(), c.Req.Group()
	if !ValidID(gid) {
		return &Error{Code: codec.CodeJoinFailed, Command: codec.CmdExitResp}
	}
	g, err := r.db.GroupByID(gid)
	if errors.Is(err, storage.ErrNotFound) {
		c.Reply(codec.CodeExitOK, codec.CmdExitResp, nil)
		return nil
	}
	if err != nil {
		return err
	}
	var left bool
	err = r.wait(func(done func(error)) error {
		return r.db.Leave(g, me.UID, func(l bool, err error) { left = l; done(err) })
	})
	if err != nil {
		return err
	}
	c.Reply(codec.CodeExitOK, codec.CmdExitResp, nil)
	if left {
		if r.cluster != nil {
			r.cluster.Membership(me.UID, g, false)
		}
		r.notifyMembers(g, gid, me, codec.CmdExitNotify)
	}
	return nil
}

// notifyMembers sends {"command":cmd,"data":{"createTime","group","user"}}
// to every live member of g but me, one encoded frame for all. The join or
// leave it tells of is done and answered: a failure to tell is logged, not
// answered as the request's failure.
func (r *Router) notifyMembers(g uint64, gid string, me Identity, cmd codec.Cmd) {
	u, err := r.db.UserByUID(me.UID)
	if err == nil {
		var members []uint64
		if members, err = r.db.Members(g); err == nil {
			r.tellMembers(g, members, frameOfNotice(r.now().UnixMilli(), gid, &u, cmd), me.UID)
			return
		}
	}
	r.log.Error("group notice not sent", "group", gid, "command", int(cmd), "err", err)
}

func frameOfNotice(now int64, gid string, u *storage.User, cmd codec.Cmd) []byte {
	o := codec.BeginObject(nil)
	o.Int("createTime", now)
	o.String("group", gid)
	uo := codec.BeginObject(nil)
	uo.String("avatar", u.Avatar)
	uo.String("id", u.ID)
	uo.String("nick", u.Nick)
	o.Raw("user", uo.End())
	return codec.AppendTextFrame(nil, codec.AppendEnvelope(nil, 0, cmd, o.End()))
}

// tellMembers sends frame to the live connections of g's members but skip.
func (r *Router) tellMembers(g uint64, members []uint64, frame []byte, skip uint64) {
	to := make([]uint64, 0, len(members))
	for _, uid := range members {
		if uid != skip {
			to = append(to, uid)
		}
	}
	r.deliverGroup(g, to, frame, nil)
}

// groupChat stores and fans out a group message (PROTOCOL §5): the sender
// must be a member; live members (the sender's connections too) get the
// push, the others find it in their group offline queue. A push to a member
// online when the message was stored is followed to the socket: a member
// no connection wrote it to gets it queued (storage.Delivery.Settle).
func (r *Router) groupChat(c *Context, m storage.Message, clientID bool) error {
	me, gid := c.Session.Identity(), c.Req.Group()
	if !ValidID(gid) {
		return errBadMessage
	}
	forbidden := &Error{Code: codec.CodeForbidden, Command: codec.CmdChatAck}
	g, err := r.db.GroupByID(gid)
	if errors.Is(err, storage.ErrNotFound) {
		return forbidden
	}
	if err != nil {
		return err
	}
	ver := r.db.MembershipVersion(g) // before the members: AppendGroup
	members, err := r.db.Members(g)
	if err != nil {
		return err
	}
	var online, offline []uint64
	isMember := false
	for _, uid := range members {
		if uid == me.UID {
			isMember = true
			continue // one's own message is nobody's delivery (PROTOCOL §7.2)
		}
		if r.hub.Online(uid) {
			online = append(online, uid)
		} else {
			offline = append(offline, uid)
		}
	}
	if !isMember {
		return forbidden
	}
	m.ChatType, m.Group, m.GroupID, m.To, m.ToID = storage.ChatGroup, g, gid, 0, ""
	st, e := c.st, c.e
	err = r.db.AppendGroup(m, online, offline, ver, storage.AppendOptions{ClientID: clientID}, func(res storage.AppendResult) {
		if res.Err != nil {
			r.log.Error("group append failed", "uid", me.ID, "err", res.Err)
			r.reply(st, e, replyFrame(codec.CodeBadMessage, codec.CmdChatAck, nil))
			return
		}
		received := e.received // e is recycled once the ack leaves
		r.replyAck(st, e, codec.CodeSent, &res.Msg)
		if res.Duplicate {
			return
		}
		push := pushFrame(&res.Msg)
		gp := newGroupPush(r, res.Delivery, len(online), gid, g, res.Msg.Seq, received)
		// The online members followed, the others (who may have come
		// online since) and every terminal of the sender too (compat):
		// in a cluster one message per node that holds any of them.
		to := make([]uint64, 0, len(online)+len(offline)+1)
		to = append(append(append(to, online...), offline...), me.UID)
		r.deliverGroup(g, to, push, gp.trk)
		for i := range gp.trk {
			gp.trk[i].Release()
		}
	})
	if err != nil {
		return err
	}
	return errLater
}

// groupPush follows one group message's pushes to the members online when
// it was stored, one Tracker each, each settling that member's delivery.
type groupPush struct {
	r   *Router
	d   storage.Delivery
	trk []Tracker
}

func newGroupPush(r *Router, d storage.Delivery, n int, gid string, g, seq uint64, received int64) *groupPush {
	gp := &groupPush{r: r, d: d, trk: make([]Tracker, n)}
	for i := range gp.trk {
		t := &gp.trk[i]
		t.Init(gp)
		t.Index, t.Seq, t.Conv, t.Group, t.ConvID, t.Received = int32(i), seq, gid, true, g, received
	}
	return gp
}

// Followed implements Follower for one member's push.
func (gp *groupPush) Followed(t *Tracker, written bool) {
	if !written {
		gp.r.lost.Add(1)
	}
	gp.d.Member(int(t.Index)).Settle(written)
}

// recall serves cmd 15 (PROTOCOL §4.5): the sender, within the window,
// replaces a message by a recall marker; both sides (or the group) get
// command 16.
func (r *Router) recall(c *Context) error {
	me, failed := c.Session.Identity(), &Error{Code: codec.CodeRecallFailed, Command: codec.CmdRecallResp}
	var id [16]byte
	if len(c.Req.ID) != 32 || !isLowerHex(c.Req.ID) {
		return failed
	}
	_, _ = hex.Decode(id[:], []byte(c.Req.ID))
	notBefore := r.now().Add(-r.opts.RecallWindow).UnixMilli()
	st, e := c.st, c.e
	err := r.db.Recall(me.UID, id, notBefore, func(m storage.Message, err error) {
		if err != nil {
			if !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrTooLate) && !errors.Is(err, storage.ErrRecalled) {
				r.log.Error("recall failed", "uid", me.ID, "err", err)
			}
			r.reply(st, e, replyFrame(codec.CodeRecallFailed, codec.CmdRecallResp, nil))
			return
		}
		r.reply(st, e, replyFrame(codec.CodeRecallOK, codec.CmdRecallResp, nil))
		o := codec.BeginObject(nil)
		o.String("from", m.FromID)
		if m.ChatType == storage.ChatGroup {
			o.String("groupId", m.GroupID)
		}
		o.String("id", hex.EncodeToString(m.ID[:]))
		o.Int("seq", int64(m.Seq))
		if m.ChatType != storage.ChatGroup {
			o.String("to", m.ToID)
		}
		frame := codec.AppendTextFrame(nil, codec.AppendEnvelope(nil, 0, codec.CmdRecallResp, o.End()))
		if m.ChatType != storage.ChatGroup {
			r.hub.Deliver(m.From, frame, nil, nil)
			if m.To != m.From {
				r.hub.Deliver(m.To, frame, nil, nil)
			}
			return
		}
		// Members are read off the committer: it must not wait on reads.
		go func() {
			members, err := r.db.Members(m.Group)
			if err != nil {
				r.log.Error("recall fan-out failed", "err", err)
				return
			}
			r.deliverGroup(m.Group, members, frame, nil)
		}()
	})
	if err != nil {
		return err
	}
	return errLater
}
