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
	if req.Group() != "" {
		return errGetFailed // groups arrive with the group layer
	}
	var peer storage.User
	if req.FromUserID != "" {
		if peer, err = r.db.UserByID(req.FromUserID); errors.Is(err, storage.ErrNotFound) {
			return errGetFailed
		} else if err != nil {
			return err
		}
	}
	count := r.opts.PageCap
	if n, ok, err := codec.ParseInt(req.Count); err != nil {
		return errGetFailed
	} else if ok && n > 0 && n < int64(count) {
		count = int(n)
	}
	s := c.Session
	switch typ {
	case 0:
		return r.db.TakeOffline(me.UID, peer.UID, count, func(pages []storage.OfflinePage, err error) {
			if err != nil {
				r.log.Error("take offline failed", "uid", me.ID, "err", err)
				s.Send(replyFrame(codec.CodeGetMsgFailed, codec.CmdMessageResp, nil))
				return
			}
			s.Send(replyFrame(codec.CodeOfflineMsgOK, codec.CmdMessageResp, appendPages(nil, me, pages)))
		})
	case 2:
		if peer.UID == 0 {
			return errGetFailed
		}
		pages, err := r.db.Offline(me.UID, peer.UID, count)
		if err != nil {
			return err
		}
		c.Reply(codec.CodePullOfflineOK, codec.CmdMessageResp, appendPages(nil, me, pages))
		return nil
	}
	if peer.UID == 0 {
		return errGetFailed
	}
	q := storage.HistoryQuery{Count: count, Desc: req.Order == "desc"}
	for _, f := range [...]struct {
		v   codec.Int
		dst *int64
	}{{req.BeginTime, &q.Begin}, {req.EndTime, &q.End}} {
		n, _, err := codec.ParseInt(f.v)
		if err != nil || n < 0 {
			return errGetFailed
		}
		*f.dst = n
	}
	for _, f := range [...]struct {
		v   codec.Int
		dst *uint64
	}{{req.Offset, &q.Offset}, {req.AfterSeq, &q.AfterSeq}, {req.BeforeSeq, &q.BeforeSeq}} {
		n, _, err := codec.ParseInt(f.v)
		if err != nil || n < 0 {
			return errGetFailed
		}
		*f.dst = uint64(n)
	}
	msgs, err := r.db.History(me.UID, peer.UID, q)
	if err != nil {
		return err
	}
	pages := []storage.OfflinePage{{Peer: peer.UID, Msgs: msgs}}
	c.Reply(codec.CodeHistoryOK, codec.CmdMessageResp, appendPages(nil, me, pages))
	return nil
}

// appendPages appends {"friends":{peerId:[msg…]},"groups":{},"userid":id}.
// An empty result keeps the empty objects (PROTOCOL §4.4).
func appendPages(dst []byte, me Identity, pages []storage.OfflinePage) []byte {
	dst = append(dst, `{"friends":{`...)
	first := true
	for _, pg := range pages {
		if len(pg.Msgs) == 0 {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		peerID := pg.Msgs[0].ToID
		if m := pg.Msgs[0]; m.From == pg.Peer {
			peerID = m.FromID
		}
		dst = codec.AppendString(dst, peerID)
		dst = append(dst, ':', '[')
		for j := range pg.Msgs {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = appendMessage(dst, &pg.Msgs[j])
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `},"groups":{},"userid":`...)
	dst = codec.AppendString(dst, me.ID)
	return append(dst, '}')
}
