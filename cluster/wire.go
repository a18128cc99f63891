package cluster

import (
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/imgate/imgate/router"
)

// Message kinds: the first byte of every message on the bus.
const (
	// On the presence subject; header: kind, node id (8 bytes), uvarint seq.
	kindHeartbeat = 'H' // seq: the last delta or snapshot
	kindDelta     = 'D' // entries; a reply subject asks every node to confirm
	kindSnapshot  = 'S' // uvarint part, last byte, entries
	kindQuery     = 'Q' // uvarint node to send its snapshot, 0: every node
	kindBye       = 'B' // the node leaves: its users are offline
	kindCloseAll  = 'C' // close body: every node closes the user's connections
	kindMember    = 'M' // uvarint uid, uvarint gid, joined byte: a membership changed
	// On a node's subject, no header.
	kindPush = 'P' // meta, uvarint followed, uvarint n, n × uvarint uid, frame
	kindAck  = 'A' // uvarint uid, uvarint seq, group byte, conv
)

var errShort = errors.New("cluster: short message")

func (n *Node) appendHeader(b []byte, kind byte, seq uint64) []byte {
	b = append(b, kind)
	b = binary.BigEndian.AppendUint64(b, n.id)
	return binary.AppendUvarint(b, seq)
}

// reader decodes a message; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[k:]
	return v
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) < 1 {
		r.err = errShort
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uint64() uint64 {
	if r.err != nil || len(r.b) < 8 {
		r.err = errShort
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) uint16() uint16 {
	if r.err != nil || len(r.b) < 2 {
		r.err = errShort
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

func (r *reader) string() string {
	k := r.uvarint()
	if r.err != nil || uint64(len(r.b)) < k {
		r.err = errShort
		return ""
	}
	s := string(r.b[:k])
	r.b = r.b[k:]
	return s
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// appendMeta appends what an acknowledging connection needs of a push
// (router.Tracker's Seq, ConvID, Group, Conv); zero for t nil.
func appendMeta(b []byte, t *router.Tracker) []byte {
	if t == nil {
		return append(b, 0, 0, 0, 0)
	}
	b = binary.AppendUvarint(b, t.Seq)
	b = binary.AppendUvarint(b, t.ConvID)
	b = append(b, boolByte(t.Group))
	return appendString(b, t.Conv)
}

type entry struct {
	uid   uint64
	conns int32
	typ   int8
}

func appendEntries(b []byte, es []entry) []byte {
	b = binary.AppendUvarint(b, uint64(len(es)))
	for _, e := range es {
		b = binary.AppendUvarint(b, e.uid)
		b = append(b, byte(e.typ))
		b = binary.AppendUvarint(b, uint64(max(e.conns, 0)))
	}
	return b
}

func readEntries(r *reader, into map[uint64]remoteUser) {
	k := r.uvarint()
	for i := uint64(0); i < k && r.err == nil; i++ {
		uid := r.uvarint()
		typ := int8(r.byte())
		conns := r.uvarint()
		if r.err != nil {
			return
		}
		if conns == 0 {
			delete(into, uid)
		} else {
			into[uid] = remoteUser{conns: int32(min(conns, 1<<30)), typ: typ}
		}
	}
}

// publishPresence sends what changed since the last delta, or a whole
// snapshot when one was asked for; the announces waiting go with it. It
// runs on the node's goroutine (run), which owns n.seq.
func (n *Node) publishPresence() {
	n.mu.Lock()
	snap := n.snapshot
	n.snapshot = false
	var es []entry
	if snap {
		es = make([]entry, 0, len(n.users))
		for uid, u := range n.users {
			es = append(es, entry{uid, u.conns + u.announcing, u.typ})
		}
	} else {
		es = make([]entry, 0, len(n.dirty))
		for uid := range n.dirty {
			u := n.users[uid]
			es = append(es, entry{uid, u.conns + u.announcing, u.typ})
		}
	}
	clear(n.dirty)
	waiters := n.waiters
	n.waiters = nil
	n.mu.Unlock()
	if !snap && len(es) == 0 && len(waiters) == 0 {
		return
	}
	n.seq++
	reply := ""
	if len(waiters) > 0 {
		reply = n.awaitAll(waiters)
	}
	if !n.up.Load() {
		return // the others will ask for a snapshot: the seq moved on
	}
	var err error
	if snap {
		for part := 0; err == nil; part++ {
			chunk := es[:min(len(es), snapshotChunk)]
			es = es[len(chunk):]
			msg := n.appendHeader(nil, kindSnapshot, n.seq)
			msg = binary.AppendUvarint(msg, uint64(part))
			msg = append(msg, boolByte(len(es) == 0))
			msg = appendEntries(msg, chunk)
			if len(es) == 0 {
				err = n.publish(n.subjPresence, reply, msg)
				break
			}
			err = n.publish(n.subjPresence, "", msg)
		}
	} else {
		err = n.publish(n.subjPresence, reply, appendEntries(n.appendHeader(nil, kindDelta, n.seq), es))
	}
	if err != nil {
		n.log.Debug("presence not published", "err", err)
	}
}

func (n *Node) publish(subj, reply string, msg []byte) error {
	if reply == "" {
		return n.nc.Publish(subj, msg)
	}
	return n.nc.PublishRequest(subj, reply, msg)
}

// awaitAll registers fns to run once every node alive now confirmed the
// next presence message, or AnnounceTimeout passed, and returns the reply
// subject to ask for it; "" when there is nobody to wait for (fns ran).
func (n *Node) awaitAll(fns []func()) string {
	return n.awaitInto(nil, fns...)
}

// await is awaitAll; a non-nil *into receives the wait, whose sum the
// answers add to (read it under pmu once the fns ran).
func (n *Node) awaitInto(into **pendingAnnounce, fns ...func()) string {
	now := n.opts.Now()
	need := make(map[uint64]bool)
	if n.up.Load() {
		n.rmu.RLock()
		for id, r := range n.remotes {
			if r.synced && !r.suspect && n.alive(r, now) {
				need[id] = true
			}
		}
		n.rmu.RUnlock()
	}
	if len(need) == 0 {
		for _, f := range fns {
			f()
		}
		return ""
	}
	id := n.reqID.Add(1)
	a := &pendingAnnounce{need: need, fns: fns, deadline: now.Add(n.opts.AnnounceTimeout)}
	if into != nil {
		*into = a
	}
	n.pmu.Lock()
	n.announces[id] = a
	n.pmu.Unlock()
	return n.subjReply + strconv.FormatUint(id, 10)
}

// heartbeat tells the others this node lives and where its presence is,
// and forgets the nodes not heard from.
func (n *Node) heartbeat() {
	if n.up.Load() {
		_ = n.nc.Publish(n.subjPresence, n.appendHeader(nil, kindHeartbeat, n.seq))
	}
	now := n.opts.Now()
	n.rmu.Lock()
	for id, r := range n.remotes {
		if !n.alive(r, now) {
			delete(n.remotes, id)
			n.log.Info("node gone: its users are offline", "node", strconv.FormatUint(id, 16), "users", len(r.users))
		}
	}
	n.rmu.Unlock()
}

// expire settles the pushes and announces that waited too long.
func (n *Node) expire() {
	now := n.opts.Now()
	var pushes []*pendingPush
	var fns []func()
	n.pmu.Lock()
	for id, p := range n.pushes {
		if now.After(p.deadline) {
			pushes = append(pushes, p)
			delete(n.pushes, id)
		}
	}
	var suspects []uint64
	for id, a := range n.announces {
		if now.After(a.deadline) {
			fns = append(fns, a.fns...)
			for node := range a.need {
				suspects = append(suspects, node)
			}
			delete(n.announces, id)
		}
	}
	n.pmu.Unlock()
	if len(suspects) > 0 {
		n.rmu.Lock()
		for _, node := range suspects {
			if r := n.remotes[node]; r != nil && !r.suspect {
				r.suspect = true
				n.log.Warn("node did not confirm a login in time: logins stop waiting for it until it is heard again", "node", strconv.FormatUint(node, 16))
			}
		}
		n.rmu.Unlock()
	}
	for _, p := range pushes {
		for _, idx := range p.expect {
			n.stats.timeouts.Add(uint64(len(idx)))
		}
		n.settleAll(p)
	}
	for _, f := range fns {
		f()
	}
}

// onPresence applies another node's presence message.
func (n *Node) onPresence(m *nats.Msg) {
	r := &reader{b: m.Data}
	kind := r.byte()
	node := r.uint64()
	seq := r.uvarint()
	if r.err != nil || node == n.id {
		return
	}
	switch kind {
	case kindHeartbeat, kindBye:
		if len(r.b) != 0 {
			return // not ours: a heartbeat or bye has nothing after its header
		}
	case kindDelta, kindSnapshot, kindQuery, kindCloseAll, kindMember:
	default:
		return
	}
	switch kind {
	case kindBye:
		n.rmu.Lock()
		delete(n.remotes, node)
		n.rmu.Unlock()
		return
	case kindCloseAll:
		uid := r.uvarint()
		code := r.uint16()
		byTerminal := r.byte() == 1
		terminal := r.string()
		if r.err != nil {
			return
		}
		k := n.closeLocal(uid, byTerminal, terminal, code, string(r.b))
		if m.Reply != "" {
			_ = n.nc.Publish(m.Reply, binary.AppendUvarint(binary.BigEndian.AppendUint64(nil, n.id), uint64(k)))
		}
		return
	case kindMember:
		uid, gid := r.uvarint(), r.uvarint()
		in := r.byte() == 1
		if r.err == nil {
			n.applyMembership(uid, gid, in)
		}
		return
	case kindQuery:
		if target := r.uvarint(); r.err == nil && (target == 0 || target == n.id) {
			n.mu.Lock()
			n.snapshot = true
			n.mu.Unlock()
			n.signal()
		}
	}
	now := n.opts.Now()
	ask := false
	n.rmu.Lock()
	rm := n.remotes[node]
	if rm == nil {
		rm = &remote{users: make(map[uint64]remoteUser)}
		n.remotes[node] = rm
	}
	rm.heard = now
	rm.suspect = false
	wasSynced := rm.synced
	switch kind {
	case kindHeartbeat:
		ask = !rm.synced || seq != rm.seq
	case kindDelta:
		readEntries(r, rm.users)
		if seq != rm.seq+1 {
			rm.synced = false // a delta was missed
		}
		rm.seq = seq
		ask = !rm.synced
	case kindSnapshot:
		part := r.uvarint()
		last := r.byte() == 1
		if part == 0 {
			rm.stage = make(map[uint64]remoteUser)
		}
		if rm.stage == nil {
			ask = true // its first part was missed
			break
		}
		readEntries(r, rm.stage)
		if last && r.err == nil {
			rm.users, rm.stage, rm.seq, rm.synced = rm.stage, nil, seq, true
		}
	}
	if rm.synced && !wasSynced {
		n.log.Info("node joined: its presence is known", "node", strconv.FormatUint(node, 16), "users", len(rm.users))
	}
	if ask && now.Sub(rm.asked) >= n.hb {
		rm.asked = now
	} else {
		ask = false
	}
	n.rmu.Unlock()
	if m.Reply != "" && (kind == kindDelta || kind == kindSnapshot) {
		_ = n.nc.Publish(m.Reply, binary.BigEndian.AppendUint64(nil, n.id))
	}
	if ask {
		_ = n.nc.Publish(n.subjPresence, binary.AppendUvarint(n.appendHeader(nil, kindQuery, 0), node))
	}
}

// onNode serves what another node asks of this one's connections.
func (n *Node) onNode(m *nats.Msg) {
	r := &reader{b: m.Data}
	switch r.byte() {
	case kindPush:
		var meta router.Tracker
		meta.Seq = r.uvarint()
		meta.ConvID = r.uvarint()
		meta.Group = r.byte() == 1
		meta.Conv = r.string()
		nt := r.uvarint()
		k := r.uvarint()
		if r.err != nil || nt > k || k > uint64(len(r.b)) {
			return
		}
		uids := make([]uint64, k)
		for i := range uids {
			uids[i] = r.uvarint()
		}
		if r.err != nil {
			return
		}
		frame := r.b // the message's own copy: nats.go does not reuse it
		if !textFrame(frame) {
			return // not a push a node made: nothing reaches a client
		}
		var col *collect
		if nt > 0 && m.Reply != "" {
			col = &collect{n: n, reply: m.Reply, trk: make([]router.Tracker, nt), bits: make([]byte, (nt+7)/8)}
			col.left.Store(int32(nt))
		}
		for i, uid := range uids {
			var t *router.Tracker
			if col != nil && uint64(i) < nt {
				t = &col.trk[i]
				t.Init(col)
				t.Index, t.Seq, t.ConvID, t.Group, t.Conv = int32(i), meta.Seq, meta.ConvID, meta.Group, meta.Conv
			}
			n.local.Deliver(uid, frame, nil, t)
		}
		if col != nil {
			for i := range col.trk {
				col.trk[i].Release()
			}
		}
	case kindAck:
		uid := r.uvarint()
		seq := r.uvarint()
		group := r.byte() == 1
		if r.err == nil {
			n.local.Ack(uid, string(r.b), group, seq, nil)
		}
	}
}

// textFrame reports whether b is exactly one unmasked, final WebSocket
// text frame (RFC 6455 §5.2), as every push is: bytes from the bus go to
// clients' sockets only in that shape.
func textFrame(b []byte) bool {
	if len(b) < 2 || b[0] != 0x81 || b[1]&0x80 != 0 {
		return false
	}
	n, h := uint64(b[1]&0x7f), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return false
		}
		n, h = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return false
		}
		n, h = binary.BigEndian.Uint64(b[2:]), 10
	}
	return uint64(len(b)-h) == n
}

// collect gathers this node's outcome of a push another node follows,
// and answers it once every receiver's is known.
type collect struct {
	n     *Node
	reply string
	trk   []router.Tracker
	mu    sync.Mutex
	bits  []byte
	left  atomic.Int32
}

// Followed implements router.Follower.
func (c *collect) Followed(t *router.Tracker, written bool) {
	if written {
		c.mu.Lock()
		c.bits[t.Index/8] |= 1 << (t.Index % 8)
		c.mu.Unlock()
	}
	if c.left.Add(-1) == 0 {
		c.mu.Lock()
		msg := append(binary.BigEndian.AppendUint64(nil, c.n.id), c.bits...)
		c.mu.Unlock()
		_ = c.n.nc.Publish(c.reply, msg)
	}
}

// onReply takes a reply to this node: a push's outcome, or a node's
// confirmation of a presence message.
func (n *Node) onReply(m *nats.Msg) {
	id, err := strconv.ParseUint(m.Subject[strings.LastIndexByte(m.Subject, '.')+1:], 10, 64)
	if err != nil {
		return
	}
	noResponders := len(m.Data) == 0 && m.Header.Get("Status") == "503" // nats.go's no-responders status
	n.pmu.Lock()
	if p := n.pushes[id]; p != nil {
		switch {
		case noResponders: // nobody listens: the nodes are gone
			delete(n.pushes, id)
			n.pmu.Unlock()
			n.settleAll(p)
			return
		case len(m.Data) < 8:
			n.pmu.Unlock()
			return
		}
		node := binary.BigEndian.Uint64(m.Data)
		idx := p.expect[node]
		delete(p.expect, node)
		if len(p.expect) == 0 {
			delete(n.pushes, id)
		}
		n.pmu.Unlock()
		n.settle(p, idx, m.Data[8:])
		return
	}
	a := n.announces[id]
	if a == nil || noResponders || len(m.Data) < 8 {
		n.pmu.Unlock()
		return
	}
	node := binary.BigEndian.Uint64(m.Data)
	if !a.need[node] {
		n.pmu.Unlock()
		return
	}
	delete(a.need, node)
	if k, w := binary.Uvarint(m.Data[8:]); w > 0 {
		a.sum += int(min(k, 1<<20))
	}
	if len(a.need) > 0 {
		n.pmu.Unlock()
		return
	}
	delete(n.announces, id)
	n.pmu.Unlock()
	for _, f := range a.fns {
		f()
	}
}
