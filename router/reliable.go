package router

import (
	"cmp"
	"errors"
	"slices"

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
	cv, seq, err := r.cursor(me, c.Req, codec.CmdAckResp)
	if err != nil {
		return err
	}
	r.hub.Ack(me.UID, cv.id, cv.group, seq, c.Session)
	return r.db.Ack(me.UID, cv.peer, cv.group, seq)
}

// cursor reads the conversation and seq of a cmd 21 or 27 request and
// checks them against the store: seq must be positive and not past the
// conversation's last. A bad request is 10029 with command resp.
func (r *Router) cursor(me Identity, req *codec.Request, resp codec.Cmd) (conversation, uint64, error) {
	bad := &Error{Code: codec.CodeBadRequest, Command: resp}
	seq, ok, err := codec.ParseInt(req.Seq)
	if !ok || err != nil || seq <= 0 {
		return conversation{}, 0, bad
	}
	cv, err := r.resolve(me, req.Peer, req.Group())
	if errors.Is(err, errBadConversation) {
		return conversation{}, 0, bad
	}
	if err != nil {
		return conversation{}, 0, err
	}
	last, err := r.db.LastSeq(me.UID, cv.peer, cv.group)
	if err != nil {
		return conversation{}, 0, err
	}
	if uint64(seq) > last {
		return conversation{}, 0, bad
	}
	return cv, uint64(seq), nil
}

// ackOnLoop applies a well-formed ack to the connection that sent it, at
// once, on its loop: a connection that ends right after acknowledging
// does not have what it acknowledged queued. When the connection holds a
// push of the conversation at or past the ack's seq, the ack is valid and
// done here, with no worker and no reply: the user's other connections
// and the offline queue learn it without blocking (the common case: a
// client acknowledging what it was pushed). Otherwise it reports false
// and the ack goes to a worker (ack), which checks it against the store.
func (r *Router) ackOnLoop(s Session, req *codec.Request) bool {
	seq, ok, err := codec.ParseInt(req.Seq)
	if !ok || err != nil || seq <= 0 {
		return false
	}
	conv, group := req.Peer, false
	switch g := req.Group(); {
	case conv != "" && g == "":
	case g != "" && conv == "":
		conv, group = g, true
	default:
		return false
	}
	id, known, settled := s.AckLocal(conv, group, uint64(seq))
	if !known {
		return false
	}
	me := s.Identity()
	if settled {
		// Only an ack that delivered something here tells the other
		// connections: a repeated one (acks are not rate-limited) costs
		// their loops nothing.
		r.hub.Ack(me.UID, conv, group, uint64(seq), s)
	}
	if err := r.db.Ack(me.UID, id, group, uint64(seq)); err != nil && !errors.Is(err, storage.ErrClosed) {
		r.log.Error("ack failed", "uid", me.ID, "err", err)
	}
	return true
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
	seen := make(map[string]bool, len(entries))
	for i, e := range entries {
		// A conversation named twice would be two members of one object.
		key := e.Peer + "\x00" + e.GroupID
		if seen[key] {
			return bad
		}
		seen[key] = true
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
	for _, tg := range targets {
		room -= len(tg.cv.id) + 3 // its name in "more", should it go there
	}
	room = max(room, 1)
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

// read serves cmd 27 (PROTOCOL §7.5): {"cmd":27,"peer"|"groupId","seq"}
// marks the conversation read up to seq on all of the caller's terminals;
// the offline entries it covers go, and so do the pushes of it the
// caller's connections hold unacknowledged. The reply is 10030, also when
// the cursor was there already. When the cursor advanced, the read
// receipt {"command":28,"data":{"from","peer"|"groupId","readTime","seq"}}
// goes to the peer's live connections (private only) and to the caller's
// other ones.
func (r *Router) read(c *Context) error {
	me := c.Session.Identity()
	cv, seq, err := r.cursor(me, c.Req, codec.CmdReadResp)
	if err != nil {
		return err
	}
	var res storage.ReadResult
	err = r.wait(func(done func(error)) error {
		return r.db.Read(me.UID, cv.peer, cv.group, seq, func(rr storage.ReadResult, err error) { res = rr; done(err) })
	})
	if err != nil {
		return err
	}
	r.hub.Ack(me.UID, cv.id, cv.group, seq, nil) // read is had
	c.Reply(codec.CodeReadOK, codec.CmdReadResp, nil)
	if !res.Advanced {
		return nil
	}
	o := codec.BeginObject(nil)
	o.String("from", me.ID)
	if cv.group {
		o.String("groupId", cv.id)
	} else {
		o.String("peer", cv.id)
	}
	o.Int("readTime", r.now().UnixMilli())
	o.Int("seq", int64(res.ReadSeq))
	frame := codec.AppendTextFrame(nil, codec.AppendEnvelope(nil, 0, codec.CmdReadResp, o.End()))
	if !cv.group && cv.peer != me.UID {
		r.hub.Deliver(cv.peer, frame, nil, nil)
	}
	r.hub.Deliver(me.UID, frame, c.Session, nil)
	return nil
}

// Recent conversations (PROTOCOL §7.4).
const (
	defaultRecentCount = 50
	maxRecentCount     = 1000
)

// recentConv is one conversation of a cmd 26 page.
type recentConv struct {
	id      string
	group   bool
	ct      storage.Contact // private: the caller's record
	readSeq uint64
	unread  uint64
	lastSeq uint64
	at      int64 // the last message's time
	last    *storage.Message
}

// recent serves cmd 25 (PROTOCOL §7.4): the caller's conversations with a
// message, newest last message first, count of them (more when the last
// ones share a time), before beforeTime when given, within the output
// room ("more":true when cut or when more remain).
func (r *Router) recent(c *Context) error {
	me := c.Session.Identity()
	bad := &Error{Code: codec.CodeBadRequest, Command: codec.CmdRecentResp}
	count := defaultRecentCount
	if n, ok, err := codec.ParseInt(c.Req.Count); err != nil || (ok && n <= 0) {
		return bad
	} else if ok {
		count = int(min(n, maxRecentCount))
	}
	before, _, err := codec.ParseInt(c.Req.BeforeTime)
	if err != nil || before < 0 {
		return bad
	}
	// Private conversations: as many as the page may take, and those that
	// share the time of the last of them.
	var convs []recentConv
	var ferr error
	privateMore := false
	err = r.db.Conversations(me.UID, before, func(ct storage.Contact) bool {
		if len(convs) >= count && ct.LastMessage != convs[len(convs)-1].at {
			privateMore = true // one more than the page takes
			return false
		}
		u, err := r.db.UserByUID(ct.Peer)
		if err != nil {
			ferr = err
			return false
		}
		convs = append(convs, recentConv{id: u.ID, ct: ct, readSeq: ct.ReadSeq, unread: ct.Unread, lastSeq: ct.LastSeq, at: ct.LastMessage})
		return true
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	// Groups: a read per group of the caller.
	gids, err := r.db.UserGroups(me.UID)
	if err != nil {
		return err
	}
	for _, gid := range gids {
		msgs, _, err := r.db.GroupHistory(gid, storage.HistoryQuery{Desc: true, Count: 1})
		if err != nil {
			return err
		}
		if len(msgs) == 0 || (before > 0 && msgs[0].CreateTime >= before) {
			continue
		}
		m := msgs[0]
		rs, err := r.db.GroupReadSeq(me.UID, gid)
		if err != nil {
			return err
		}
		unread, err := r.db.GroupUnread(me.UID, gid, rs, m.Seq)
		if err != nil {
			return err
		}
		convs = append(convs, recentConv{id: m.GroupID, group: true, readSeq: rs, unread: unread, lastSeq: m.Seq, at: m.CreateTime, last: &m})
	}
	slices.SortStableFunc(convs, func(a, b recentConv) int { return cmp.Compare(b.at, a.at) })
	more := privateMore
	if len(convs) > count {
		cut := count
		for cut < len(convs) && convs[cut].at == convs[count-1].at {
			cut++
		}
		more = more || cut < len(convs)
		convs = convs[:cut]
	}

	room := replyRoom(c.Session) - 256
	list := append(make([]byte, 0, 1024), '[')
	starts := make([]int, 0, len(convs)) // where each entry begins in list
	ats := make([]int64, 0, len(convs))  // and its time
	for i := range convs {
		cv := &convs[i]
		if cv.last == nil {
			msgs, _, err := r.db.History(me.UID, cv.ct.Peer, storage.HistoryQuery{AfterSeq: cv.lastSeq - 1, Count: 1})
			if err != nil {
				return err
			}
			if len(msgs) == 0 {
				continue // recalled and gone: nothing to show
			}
			cv.last = &msgs[0]
		}
		mark := len(list)
		starts, ats = append(starts, mark), append(ats, cv.at)
		if len(list) > 1 {
			list = append(list, ',')
		}
		o := codec.BeginObject(list)
		if cv.group {
			o.String("groupId", cv.id)
		}
		o.Raw("lastMessage", appendMessage(nil, cv.last))
		o.Int("lastMessageTime", cv.at)
		o.Int("lastSeq", int64(cv.lastSeq))
		if !cv.group {
			o.String("peer", cv.id)
			if cv.ct.Pending {
				o.Raw("pendingReply", []byte("true"))
			} else {
				o.Raw("pendingReply", []byte("false"))
			}
		}
		o.Int("readSeq", int64(cv.readSeq))
		o.Int("unReadNum", int64(cv.unread))
		list = o.End()
		if len(list) > room && len(starts) > 1 {
			// The rest does not fit. A client pages on with beforeTime,
			// so the cut goes before every conversation of this one's
			// time, unless they fill the page from its start.
			j := len(starts) - 1
			for j > 0 && ats[j-1] == cv.at {
				j--
			}
			if j == 0 {
				j = len(starts) - 1
			}
			list = list[:starts[j]]
			more = true
			break
		}
	}
	list = append(list, ']')
	o := codec.BeginObject(make([]byte, 0, len(list)+64))
	o.Raw("convs", list)
	if more {
		o.Raw("more", []byte("true"))
	}
	o.String("userid", me.ID)
	c.Reply(codec.CodeRecentOK, codec.CmdRecentResp, o.End())
	return nil
}

// IsAck reports whether payload is a receipt ack (cmd 21), which the rate
// limit does not count (PROTOCOL §7.2). It decodes payload: the engine
// asks only of messages the limit would refuse.
func IsAck(payload []byte) bool {
	d := codec.AcquireDecoder()
	defer codec.ReleaseDecoder(d)
	return d.Decode(payload) == nil && d.Req.Command() == codec.CmdAck
}
