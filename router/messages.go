package router

import (
	"errors"

	"github.com/imgate/imgate/codec"
	"github.com/imgate/imgate/storage"
)

// DefaultPageCap caps one page of cmd 19 (PROTOCOL §4.4).
const DefaultPageCap = 500

var errGetFailed = &Error{Code: codec.CodeGetMsgFailed, Command: codec.CmdMessageResp}

// getMessages serves cmd 19 (PROTOCOL §4.4) for private conversations:
// type 0 takes the offline queue (emptied and marked read in one durable
// batch), type 1 pages history, type 2 reads the queue without removing.
func (r *Router) getMessages(c *Context) error {
	req, me := c.Req, c.Session.Identity()
	if u := req.User(); u != "" && u != me.ID {
		return &Error{Code: codec.CodeForbidden, Command: codec.CmdMessageResp}
	}
	typ, ok, err := codec.ParseInt(req.Type)
	if !ok || err != nil || typ < 0 || typ > 2 {
		return errGetFailed
	}
	count := r.opts.PageCap
	if n, ok, err := codec.ParseInt(req.Count); err != nil {
		return errGetFailed
	} else if ok && n > 0 && n < int64(count) {
		count = int(n)
	}
	if gid := req.Group(); gid != "" {
		return r.groupMessages(c, me, gid, typ, count)
	}
	var peer storage.User
	if req.FromUserID != "" {
		if peer, err = r.db.UserByID(req.FromUserID); errors.Is(err, storage.ErrNotFound) {
			return errGetFailed
		} else if err != nil {
			return err
		}
	}
	s := c.Session
	switch typ {
	case 0:
		reply := func(friends, groups []storage.OfflinePage, err error) {
			if err != nil {
				r.log.Error("take offline failed", "uid", me.ID, "err", err)
				s.Send(replyFrame(codec.CodeGetMsgFailed, codec.CmdMessageResp, nil))
				return
			}
			s.Send(replyFrame(codec.CodeOfflineMsgOK, codec.CmdMessageResp, appendPages(nil, me, friends, groups)))
		}
		if peer.UID == 0 {
			return r.db.TakeAllOffline(me.UID, count, reply)
		}
		return r.db.TakeOffline(me.UID, peer.UID, count, func(pages []storage.OfflinePage, err error) { reply(pages, nil, err) })
	case 2:
		if peer.UID == 0 {
			return errGetFailed
		}
		pages, err := r.db.Offline(me.UID, peer.UID, count)
		if err != nil {
			return err
		}
		c.Reply(codec.CodePullOfflineOK, codec.CmdMessageResp, appendPages(nil, me, pages, nil))
		return nil
	}
	if peer.UID == 0 {
		return errGetFailed
	}
	q, err := historyQuery(req, count)
	if err != nil {
		return err
	}
	msgs, err := r.db.History(me.UID, peer.UID, q)
	if err != nil {
		return err
	}
	pages := []storage.OfflinePage{{Peer: peer.UID, Msgs: msgs}}
	c.Reply(codec.CodeHistoryOK, codec.CmdMessageResp, appendPages(nil, me, pages, nil))
	return nil
}

// groupMessages is cmd 19 with groupId: members only.
func (r *Router) groupMessages(c *Context, me Identity, gid string, typ int64, count int) error {
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
	s := c.Session
	switch typ {
	case 0:
		return r.db.TakeGroupOffline(me.UID, g, count, func(pages []storage.OfflinePage, err error) {
			if err != nil {
				r.log.Error("take group offline failed", "uid", me.ID, "err", err)
				s.Send(replyFrame(codec.CodeGetMsgFailed, codec.CmdMessageResp, nil))
				return
			}
			s.Send(replyFrame(codec.CodeOfflineMsgOK, codec.CmdMessageResp, appendPages(nil, me, nil, pages)))
		})
	case 2:
		pages, err := r.db.GroupOffline(me.UID, g, count)
		if err != nil {
			return err
		}
		c.Reply(codec.CodePullOfflineOK, codec.CmdMessageResp, appendPages(nil, me, nil, pages))
		return nil
	}
	q, err := historyQuery(c.Req, count)
	if err != nil {
		return err
	}
	msgs, err := r.db.GroupHistory(g, q)
	if err != nil {
		return err
	}
	c.Reply(codec.CodeHistoryOK, codec.CmdMessageResp, appendPages(nil, me, nil, []storage.OfflinePage{{Peer: g, Msgs: msgs}}))
	return nil
}

// historyQuery reads the paging members of a cmd 19 request.
func historyQuery(req *codec.Request, count int) (storage.HistoryQuery, error) {
	q := storage.HistoryQuery{Count: count, Desc: req.Order == "desc"}
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

// appendPages appends {"friends":{peerId:[msg…]},"groups":{groupId:[msg…]},
// "userid":id}. Empty results keep the empty objects (PROTOCOL §4.4).
func appendPages(dst []byte, me Identity, friends, groups []storage.OfflinePage) []byte {
	dst = append(dst, `{"friends":`...)
	dst = appendPageMap(dst, friends, func(m *storage.Message, peer uint64) string {
		if m.From == peer {
			return m.FromID
		}
		return m.ToID
	})
	dst = append(dst, `,"groups":`...)
	dst = appendPageMap(dst, groups, func(m *storage.Message, _ uint64) string { return m.GroupID })
	dst = append(dst, `,"userid":`...)
	dst = codec.AppendString(dst, me.ID)
	return append(dst, '}')
}

// appendPageMap appends {key:[msg…]} for the non-empty pages; keyOf names
// a page from its first message.
func appendPageMap(dst []byte, pages []storage.OfflinePage, keyOf func(*storage.Message, uint64) string) []byte {
	dst = append(dst, '{')
	first := true
	for _, pg := range pages {
		if len(pg.Msgs) == 0 {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = codec.AppendString(dst, keyOf(&pg.Msgs[0], pg.Peer))
		dst = append(dst, ':', '[')
		for j := range pg.Msgs {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = appendMessage(dst, &pg.Msgs[j])
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}
