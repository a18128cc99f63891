package router

import (
	"errors"

	"github.com/imgate/imgate/codec"
	"github.com/imgate/imgate/storage"
)

// DefaultPageCap caps one page of cmd 19 (PROTOCOL §4.4).
const DefaultPageCap = 500

var errGetFailed = &Error{Code: codec.CodeGetMsgFailed, Command: codec.CmdMessageResp}

// getMessages serves cmd 19 (PROTOCOL §4.4): type 0 pulls the offline
// queue (removed once the reply was written), type 1 pages history, type 2
// reads the queue without removing. Every reply fits the connection's
// output room; one that stops early says "more":true.
func (r *Router) getMessages(c *Context) error {
	req, me := c.Req, c.Session.Identity()
	if u := req.User(); u != "" && u != me.ID {
		return &Error{Code: codec.CodeForbidden, Command: codec.CmdMessageResp}
	}
	typ, ok, err := codec.ParseInt(req.Type)
	if !ok || err != nil || typ < 0 || typ > 2 {
		return errGetFailed
	}
	count, asked := r.opts.PageCap, false
	if n, ok, err := codec.ParseInt(req.Count); err != nil {
		return errGetFailed
	} else if ok && n > 0 && n <= int64(count) {
		count, asked = int(n), true
	}
	room := replyRoom(c.Session)
	// "more" tells of what the server held back (the page cap, the output
	// room), not of a count the client chose itself.
	c.pageAsked = asked
	c.pageCount = count
	if gid := req.Group(); gid != "" {
		return r.groupMessages(c, me, gid, typ, count, room)
	}
	var peer storage.User
	if req.FromUserID != "" {
		if peer, err = r.db.UserByID(req.FromUserID); errors.Is(err, storage.ErrNotFound) {
			return errGetFailed
		} else if err != nil {
			return err
		}
	}
	switch typ {
	case 0, 2:
		if typ == 2 && peer.UID == 0 {
			return errGetFailed
		}
		// Pushes to me that no connection is known to have written yet
		// are queued first: the pull finds them (PROTOCOL §4.4).
		if err := r.db.QueuePending(me.UID); err != nil {
			return err
		}
		res, err := r.db.ReadOffline(me.UID, storage.QueueQuery{Peer: peer.UID, Limit: count, MaxBytes: room})
		if err != nil {
			return err
		}
		return r.replyQueue(c, me, typ, res, room)
	}
	if peer.UID == 0 {
		return errGetFailed
	}
	q, err := historyQuery(req, count, room)
	if err != nil {
		return err
	}
	msgs, more, err := r.db.History(me.UID, peer.UID, q)
	if err != nil {
		return err
	}
	r.replyHistory(c, me, []storage.OfflinePage{{Peer: peer.UID, Msgs: msgs}}, nil, more, room)
	return nil
}

// replyRoom is the room a reply may take: the connection's output room
// less the envelope, and never less than one message can need.
func replyRoom(s Session) int {
	const envelope = 512
	return max(s.Room()-envelope, 1)
}

// groupMessages is cmd 19 with groupId: members only.
func (r *Router) groupMessages(c *Context, me Identity, gid string, typ int64, count, room int) error {
	forbidden := &Error{Code: codec.CodeForbidden, Command: codec.CmdMessageResp}
	g, err := r.db.GroupByID(gid)
	if errors.Is(err, storage.ErrNotFound) {
		return forbidden
	}
	if err != nil {
		return err
	}
	if ok, err := r.db.IsMember(g, me.UID); err != nil {
		return err
	} else if !ok {
		return forbidden
	}
	if typ != 1 {
		if err := r.db.QueuePending(me.UID); err != nil {
			return err
		}
		res, err := r.db.ReadOffline(me.UID, storage.QueueQuery{Group: g, Limit: count, MaxBytes: room})
		if err != nil {
			return err
		}
		return r.replyQueue(c, me, typ, res, room)
	}
	q, err := historyQuery(c.Req, count, room)
	if err != nil {
		return err
	}
	msgs, more, err := r.db.GroupHistory(g, q)
	if err != nil {
		return err
	}
	r.replyHistory(c, me, nil, []storage.OfflinePage{{Peer: g, Msgs: msgs}}, more, room)
	return nil
}

func (r *Router) replyHistory(c *Context, me Identity, friends, groups []storage.OfflinePage, more bool, room int) {
	more = more && c.heldBack(friends, groups)
	var pw pageWriter
	data := pw.encode(me, friends, groups, more, room)
	c.Reply(codec.CodeHistoryOK, codec.CmdMessageResp, data)
}

// replyQueue answers a queue read: type 2 as it is, type 0 followed to the
// socket, its removal (and the marking read) committed once the reply was
// written, before the connection's next request runs (PROTOCOL §4.4).
func (r *Router) replyQueue(c *Context, me Identity, typ int64, res storage.QueuePage, room int) error {
	var pw pageWriter
	data := pw.encode(me, res.Friends, res.Groups, res.More && c.heldBack(res.Friends, res.Groups), room)
	if typ == 2 {
		c.Reply(codec.CodePullOfflineOK, codec.CmdMessageResp, data)
		return nil
	}
	var rs []storage.Removal
	for i, pg := range res.Friends {
		n := pw.friends[i]
		rm := storage.Removal{Peer: pg.Peer}
		switch {
		case n == len(pg.Msgs) && !pg.More:
			rm.ReadTo = pg.LastSeq // the queue was emptied: all of it is read
		case n > 0:
			rm.ReadTo = pg.Msgs[n-1].Seq
		}
		rm.Seqs = seqsOf(pg.Msgs[:n])
		if rm.ReadTo != 0 || len(rm.Seqs) > 0 {
			rs = append(rs, rm)
		}
	}
	for i, pg := range res.Groups {
		if n := pw.groups[i]; n > 0 {
			// Read up to what it carried, as for a peer (PROTOCOL §4.4).
			rs = append(rs, storage.Removal{Peer: pg.Peer, Group: true, Seqs: seqsOf(pg.Msgs[:n]), ReadTo: pg.Msgs[n-1].Seq})
		}
	}
	c.Reply(codec.CodeOfflineMsgOK, codec.CmdMessageResp, data)
	if len(rs) == 0 {
		return nil
	}
	p := &pullReply{r: r, st: c.st, uid: me.UID, rs: rs}
	p.t.Init(p)
	c.trk, c.parks = &p.t, true
	return nil
}

// heldBack reports whether a page that has more after it stopped for the
// server's reasons: no count asked, or fewer messages than asked.
func (c *Context) heldBack(friends, groups []storage.OfflinePage) bool {
	if !c.pageAsked {
		return true
	}
	n := 0
	for _, pg := range friends {
		n += len(pg.Msgs)
	}
	for _, pg := range groups {
		n += len(pg.Msgs)
	}
	return n < c.pageCount
}

func seqsOf(ms []storage.Message) []uint64 {
	out := make([]uint64, len(ms))
	for i := range ms {
		out[i] = ms[i].Seq
	}
	return out
}

// pullReply follows a type 0 pull's reply to the socket.
type pullReply struct {
	t   Tracker
	r   *Router
	st  *ConnState
	uid uint64
	rs  []storage.Removal
}

// Followed implements Follower: a written reply's messages leave the queue;
// either way the connection's next request may run once that is done.
func (p *pullReply) Followed(_ *Tracker, written bool) {
	if !written {
		// Nothing was sent: everything stays queued. This may run where
		// the queue's lock is held (a reply refused as it leaves).
		go p.r.unpark(p.st)
		return
	}
	err := p.r.db.RemoveOffline(p.uid, p.rs, func(err error) {
		if err != nil {
			p.r.log.Error("offline removal failed", "err", err)
		}
		p.r.unpark(p.st)
	})
	if err != nil {
		p.r.log.Error("offline removal failed", "err", err)
		go p.r.unpark(p.st) // as above: the lock may be held here
	}
}

// historyQuery reads the paging members of a cmd 19 request.
func historyQuery(req *codec.Request, count, room int) (storage.HistoryQuery, error) {
	q := storage.HistoryQuery{Count: count, Desc: req.Order == "desc", MaxBytes: room}
	for _, f := range [...]struct {
		v   codec.Int
		dst *int64
	}{{req.BeginTime, &q.Begin}, {req.EndTime, &q.End}} {
		n, _, err := codec.ParseInt(f.v)
		if err != nil || n < 0 {
			return q, errGetFailed
		}
		*f.dst = n
	}
	for _, f := range [...]struct {
		v   codec.Int
		dst *uint64
	}{{req.Offset, &q.Offset}, {req.AfterSeq, &q.AfterSeq}, {req.BeforeSeq, &q.BeforeSeq}} {
		n, _, err := codec.ParseInt(f.v)
		if err != nil || n < 0 {
			return q, errGetFailed
		}
		*f.dst = uint64(n)
	}
	return q, nil
}

// pageWriter encodes {"friends":{peerId:[msg…]},"groups":{groupId:[msg…]},
// "more":true,"userid":id} within a byte limit, and remembers how many
// messages of each page it took. Empty results keep the empty objects
// (PROTOCOL §4.4); "more" is there only when true.
type pageWriter struct {
	friends, groups []int // messages taken per page
}

// encode returns the data of a cmd 20 reply holding the pages' messages in
// order until they would pass limit bytes (the first message always
// goes); more is set in the data when the reply was cut or more is true.
func (pw *pageWriter) encode(me Identity, friends, groups []storage.OfflinePage, more bool, limit int) []byte {
	pw.friends, pw.groups = make([]int, len(friends)), make([]int, len(groups))
	dst := make([]byte, 0, 256)
	dst = append(dst, `{"friends":`...)
	cut := false
	base := len(dst)
	taken := 0
	dst, cut = appendPageMap(dst, friends, pw.friends, base, limit, &taken, func(m *storage.Message, peer uint64) string {
		if m.From == peer {
			return m.FromID
		}
		return m.ToID
	})
	dst = append(dst, `,"groups":`...)
	if cut {
		dst = append(dst, '{', '}')
	} else {
		dst, cut = appendPageMap(dst, groups, pw.groups, base, limit, &taken, func(m *storage.Message, _ uint64) string { return m.GroupID })
	}
	if cut || more {
		dst = append(dst, `,"more":true`...)
	}
	dst = append(dst, `,"userid":`...)
	dst = codec.AppendString(dst, me.ID)
	return append(dst, '}')
}

// appendPageMap appends {key:[msg…]} for the non-empty pages, counting the
// messages taken of each in n, until the bytes since base would pass
// limit (once *taken > 0). keyOf names a page from its first message.
func appendPageMap(dst []byte, pages []storage.OfflinePage, n []int, base, limit int, taken *int, keyOf func(*storage.Message, uint64) string) ([]byte, bool) {
	dst = append(dst, '{')
	first := true
	for i, pg := range pages {
		if len(pg.Msgs) == 0 {
			continue
		}
		mark := len(dst)
		if !first {
			dst = append(dst, ',')
		}
		dst = codec.AppendString(dst, keyOf(&pg.Msgs[0], pg.Peer))
		dst = append(dst, ':', '[')
		for j := range pg.Msgs {
			before := len(dst)
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = appendMessage(dst, &pg.Msgs[j])
			if *taken > 0 && len(dst)-base > limit {
				if j == 0 {
					dst = dst[:mark] // not even one message of this page
				} else {
					dst = append(dst[:before], ']')
				}
				return append(dst, '}'), true
			}
			*taken++
			n[i]++
		}
		dst = append(dst, ']')
		first = false
	}
	return append(dst, '}'), false
}
