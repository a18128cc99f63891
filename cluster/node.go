package cluster

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/imgate/imgate/router"
)

// Defaults of Options.
const (
	DefaultPrefix = "imgate"
	// DefaultPushTimeout is how long a node waits for another to say
	// whether it wrote a push; past it the push counts as not written and
	// its message stays queued. The store queues a push unsettled this
	// long anyway (storage/postgres: pendingExpiry).
	DefaultPushTimeout = 2 * time.Second
	// DefaultAnnounceTimeout bounds the wait of a login for the other
	// nodes to know of it (PROTOCOL §8).
	DefaultAnnounceTimeout = time.Second
	// DefaultPingInterval is engine's: presence's heartbeat is a quarter
	// of it, a node's expiry one and a half.
	DefaultPingInterval = 30 * time.Second
	// maxPendingPushes bounds the pushes awaiting another node's word;
	// past it a push counts as not written at once (queued).
	maxPendingPushes = 1 << 18
	// snapshotChunk is the number of users per snapshot message
	// (≈ 12 bytes each: well under NATS's 1 MiB max payload).
	snapshotChunk = 8192
)

// ErrClosed is returned by operations on a closed Node.
var ErrClosed = errors.New("cluster: node closed")

// Options configures a Node.
type Options struct {
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock of heartbeats and expiry; nil means time.Now.
	Now func() time.Time
	// Prefix of every subject; empty means DefaultPrefix. Clusters that
	// share a NATS account need different prefixes.
	Prefix string
	// PingInterval is the gateways' -ping-interval: heartbeats go every
	// quarter of it, and a node not heard from for one and a half is gone
	// (PROTOCOL §8: offline within two). Zero means DefaultPingInterval.
	PingInterval time.Duration
	// MaxConnsPerUser caps one user's connections over all nodes
	// (PROTOCOL §8); zero or negative: no cap here (engine's per-node cap
	// still holds).
	MaxConnsPerUser int
	// UserGroups returns the groups uid is a member of (the store's);
	// with it, a group message is one publish on the group's subject,
	// which nodes hold while a local user is a member. Nil: one message
	// per node with live members.
	UserGroups func(uid uint64) ([]uint64, error)
	// PushTimeout and AnnounceTimeout: zero means their defaults.
	PushTimeout     time.Duration
	AnnounceTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.PushTimeout <= 0 {
		o.PushTimeout = DefaultPushTimeout
	}
	if o.AnnounceTimeout <= 0 {
		o.AnnounceTimeout = DefaultAnnounceTimeout
	}
	return o
}

// Node is this gateway's member of a cluster: a router.Cluster over the
// local engine (the Hub it wraps) and a NATS connection. Create it with
// Dial; Close it before the engine stops.
type Node struct {
	local router.Hub
	nc    *nats.Conn
	opts  Options
	log   *slog.Logger
	id    uint64 // boot id: random per process
	hb    time.Duration
	ttl   time.Duration

	subjPresence string
	subjReply    string // prefix of this node's reply subjects
	up           atomic.Bool
	closed       atomic.Bool
	reqID        atomic.Uint64

	// This node's users (mu).
	mu       sync.Mutex
	users    map[uint64]localUser
	dirty    map[uint64]struct{}
	waiters  []func() // announces waiting for the next delta
	snapshot bool     // a snapshot is asked for
	seq      uint64   // last delta or snapshot published (publisher only)
	wake     chan struct{}

	// Other nodes (rmu).
	rmu     sync.RWMutex
	remotes map[uint64]*remote

	// Group subjects (gmu; see group.go). gmu is taken before mu, never
	// while holding it.
	gmu     sync.Mutex
	gsubs   map[uint64]*groupSub
	members map[uint64][]uint64       // local uid → its groups, once loaded
	loading map[uint64][]memberChange // local uid → changes while loading

	// Requests awaiting replies (pmu).
	pmu       sync.Mutex
	pushes    map[uint64]*pendingPush
	announces map[uint64]*pendingAnnounce

	subs []*nats.Subscription
	quit chan struct{}
	done chan struct{}

	stats struct {
		pushes, notWritten, timeouts atomic.Uint64
	}
}

var _ router.Cluster = (*Node)(nil)

type localUser struct {
	conns, announcing int32
	typ               int8
}

// remote is what this node knows of another.
type remote struct {
	seq    uint64
	heard  time.Time
	synced bool // a snapshot arrived: users is whole
	// suspect: it did not confirm an announce in time. Announces do not
	// wait for it until it is heard from again (a node killed without a
	// word must not slow every login until it expires).
	suspect bool
	asked   time.Time
	users   map[uint64]remoteUser
	stage   map[uint64]remoteUser // a snapshot being received
}

type remoteUser struct {
	conns int32
	typ   int8
}

// pendingPush is a followed push sent to other nodes: trk[i] follows the
// message's i-th receiver; expect names, for each node whose answer is
// awaited, the receivers it holds (by presence). Each such node took one
// reference on each of its receivers' trackers.
type pendingPush struct {
	trk      []*router.Tracker
	expect   map[uint64][]int
	deadline time.Time
}

// settle gives back the references of a node that held the receivers
// idx: bits[i] says whether it wrote trk[i]'s push (nil: none). The
// caller owns idx (taken out of p.expect) and holds no lock.
func (n *Node) settle(p *pendingPush, idx []int, bits []byte) {
	for _, i := range idx {
		w := i/8 < len(bits) && bits[i/8]&(1<<(i%8)) != 0
		if !w {
			n.stats.notWritten.Add(1)
		}
		p.trk[i].Done(w)
	}
}

// settleAll gives back every reference still awaited, as not written.
// The caller owns p (taken out of n.pushes).
func (n *Node) settleAll(p *pendingPush) {
	for node, idx := range p.expect {
		delete(p.expect, node)
		n.settle(p, idx, nil)
	}
}

// pendingAnnounce waits for every node alive to answer a presence
// message (or a counted close, whose answers sum).
type pendingAnnounce struct {
	need     map[uint64]bool
	fns      []func()
	deadline time.Time
	sum      int
}

// Dial connects to the NATS servers of urls (comma-separated, as nats.go
// takes them) and joins the cluster: the Node serves the other nodes'
// requests for local's connections from then on. extra are further
// nats.go options (an in-process server, credentials, TLS). It fails if
// no server answers at first; after that, losing the bus is survived:
// nats.go reconnects with backoff, forever.
func Dial(urls string, local router.Hub, opts Options, extra ...nats.Option) (*Node, error) {
	opts = opts.withDefaults()
	if !ValidPrefix(opts.Prefix) {
		return nil, fmt.Errorf("cluster: subject prefix %q: want dot-separated tokens of [A-Za-z0-9_-]", opts.Prefix)
	}
	var idb [8]byte
	_, _ = rand.Read(idb[:])
	n := &Node{
		local:     local,
		opts:      opts,
		log:       opts.Logger,
		id:        binary.BigEndian.Uint64(idb[:]) | 1, // never 0: 0 means "every node"
		hb:        max(opts.PingInterval/4, 10*time.Millisecond),
		ttl:       opts.PingInterval * 3 / 2,
		users:     make(map[uint64]localUser),
		dirty:     make(map[uint64]struct{}),
		wake:      make(chan struct{}, 1),
		remotes:   make(map[uint64]*remote),
		pushes:    make(map[uint64]*pendingPush),
		announces: make(map[uint64]*pendingAnnounce),
		gsubs:     make(map[uint64]*groupSub),
		members:   make(map[uint64][]uint64),
		loading:   make(map[uint64][]memberChange),
		quit:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	n.subjPresence = opts.Prefix + ".p"
	n.subjReply = opts.Prefix + ".r." + n.Name() + "."
	nopts := []nats.Option{
		nats.Name("imgate " + n.Name()),
		nats.NoEcho(),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		// A publish while the bus is down fails at once instead of
		// waiting in a buffer: the push is then settled as not written.
		nats.ReconnectBufSize(-1),
		nats.PingInterval(max(opts.PingInterval/2, time.Second)),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			n.up.Store(false)
			if n.closed.Load() {
				return // Close's own
			}
			n.log.Warn("bus disconnected: other nodes count as offline", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			n.log.Info("bus reconnected", "server", redact(nc.ConnectedUrl()))
			n.up.Store(true)
			n.rejoin()
		}),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			subj := ""
			if s != nil {
				subj = s.Subject
			}
			n.log.Warn("bus error", "subject", subj, "err", err)
		}),
	}
	nc, err := nats.Connect(urls, append(nopts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("cluster: connecting to %s: %w", redact(urls), err)
	}
	n.nc = nc
	for _, s := range []struct {
		subj string
		h    nats.MsgHandler
	}{
		{n.subjPresence, n.onPresence},
		{opts.Prefix + ".n." + n.Name(), n.onNode},
		{n.subjReply + "*", n.onReply},
	} {
		sub, err := nc.Subscribe(s.subj, s.h)
		if err != nil {
			n.closed.Store(true) // its disconnection is no news
			nc.Close()
			return nil, fmt.Errorf("cluster: subscribing %s: %w", s.subj, err)
		}
		// Presence and pushes are bounded by what the engine takes; the
		// bus's own default (64 MiB a subscription) stays the backstop.
		n.subs = append(n.subs, sub)
	}
	if err := nc.Flush(); err != nil {
		n.closed.Store(true)
		nc.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	n.up.Store(true)
	go n.run()
	n.rejoin()
	server := redact(nc.ConnectedUrl())
	if urls == "" {
		server = "in-process" // nats.InProcessServer: no URL is dialled
	}
	n.log.Info("joined the cluster", "node", n.Name(), "prefix", opts.Prefix, "server", server)
	return n, nil
}

// redact hides secrets in NATS URLs: the password of user:pass@host, or
// a token (token@host) whole.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		at := strings.LastIndexByte(p, '@')
		s := strings.Index(p, "://")
		if at < 0 || s < 0 || s > at {
			continue
		}
		if c := strings.IndexByte(p[s+3:at], ':'); c >= 0 {
			parts[i] = p[:s+3+c+1] + "xxxxx" + p[at:]
		} else {
			parts[i] = p[:s+3] + "xxxxx" + p[at:]
		}
	}
	return strings.Join(parts, ",")
}

// ValidPrefix reports whether p may prefix the cluster's subjects: one or
// more dot-separated tokens of [A-Za-z0-9_-] (no wildcards).
func ValidPrefix(p string) bool {
	if p == "" {
		return false
	}
	for _, tok := range strings.Split(p, ".") {
		if tok == "" {
			return false
		}
		for i := 0; i < len(tok); i++ {
			c := tok[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				return false
			}
		}
	}
	return true
}

// MaxPayload is the largest message the NATS servers carry, in bytes.
func (n *Node) MaxPayload() int64 { return n.nc.MaxPayload() }

// Name is the node's boot id in hex: a new one every process.
func (n *Node) Name() string { return fmt.Sprintf("%016x", n.id) }

// Close leaves the cluster: the other nodes are told, pushes awaiting an
// answer count as not written, and the NATS connection closes. Call it
// after the engine stopped serving (its connections' presence goes with
// the bye).
func (n *Node) Close() {
	if n.closed.Swap(true) {
		return
	}
	close(n.quit)
	<-n.done
	if n.up.Load() {
		_ = n.nc.Publish(n.subjPresence, n.appendHeader(nil, kindBye, n.seq))
		_ = n.nc.Flush()
	}
	n.nc.Close()
	n.failPending()
}

// failPending settles what awaits another node: pushes as not written,
// announces as done.
func (n *Node) failPending() {
	n.pmu.Lock()
	pushes, announces := n.pushes, n.announces
	n.pushes, n.announces = make(map[uint64]*pendingPush), make(map[uint64]*pendingAnnounce)
	n.pmu.Unlock()
	for _, p := range pushes {
		n.settleAll(p)
	}
	for _, a := range announces {
		for _, f := range a.fns {
			f()
		}
	}
}

// Stats is a snapshot of the node's view of the cluster.
type Stats struct {
	Connected bool   // the bus connection is up
	Nodes     int    // other nodes known (their presence whole) and heard from within the expiry; 0 while the bus is down
	Pushes    uint64 // pushes sent to other nodes
	// Awaiting is the followed pushes sent to other nodes whose outcome
	// is not known yet.
	Awaiting int
	// NotWritten counts pushes another node did not write, said so, or
	// did not answer for within PushTimeout (Timeouts of them): their
	// messages stayed queued.
	NotWritten, Timeouts uint64
}

// Stats returns the current figures. Safe for concurrent use.
func (n *Node) Stats() Stats {
	now := n.opts.Now()
	st := Stats{Connected: n.up.Load(), Pushes: n.stats.pushes.Load(), NotWritten: n.stats.notWritten.Load(), Timeouts: n.stats.timeouts.Load()}
	if st.Connected {
		n.rmu.RLock()
		for _, r := range n.remotes {
			if r.synced && n.alive(r, now) {
				st.Nodes++
			}
		}
		n.rmu.RUnlock()
	}
	n.pmu.Lock()
	st.Awaiting = len(n.pushes)
	n.pmu.Unlock()
	return st
}

func (n *Node) alive(r *remote, now time.Time) bool { return now.Sub(r.heard) < n.ttl }

// run publishes presence and heartbeats, and expires what waits too long.
func (n *Node) run() {
	defer close(n.done)
	hb := time.NewTicker(n.hb)
	defer hb.Stop()
	sweep := time.NewTicker(max(min(n.opts.PushTimeout, n.opts.AnnounceTimeout)/4, 10*time.Millisecond))
	defer sweep.Stop()
	for {
		select {
		case <-n.quit:
			return
		case <-n.wake:
			n.publishPresence()
		case <-hb.C:
			n.heartbeat()
		case <-sweep.C:
			n.expire()
		}
	}
}

func (n *Node) signal() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// rejoin runs after connecting and after every reconnect: this node's
// snapshot goes out, and every other node is asked for its own.
func (n *Node) rejoin() {
	n.mu.Lock()
	n.snapshot = true
	n.mu.Unlock()
	n.signal()
	_ = n.nc.Publish(n.subjPresence, binary.AppendUvarint(n.appendHeader(nil, kindQuery, 0), 0))
}

// Presence implements router.Cluster.
func (n *Node) Presence(id router.Identity, conns int) {
	n.mu.Lock()
	u := n.users[id.UID]
	u.conns, u.typ = int32(conns), int8(id.Type)
	up, down := n.setLocked(id.UID, u)
	n.mu.Unlock()
	n.signal()
	n.groupsOnChange(id.UID, up, down)
}

// setLocked records uid's connections and logins here; up and down say
// whether uid just came (from none) or just went (to none).
func (n *Node) setLocked(uid uint64, u localUser) (up, down bool) {
	old := n.users[uid]
	was := old.conns+old.announcing > 0
	now := u.conns+u.announcing > 0
	if !now {
		delete(n.users, uid)
	} else {
		n.users[uid] = u
	}
	n.dirty[uid] = struct{}{}
	return !was && now, was && !now
}

// groupsOnChange follows uid's groups as it comes and goes: the read runs
// on a goroutine of its own (Presence must not block).
func (n *Node) groupsOnChange(uid uint64, up, down bool) {
	switch {
	case up && n.opts.UserGroups != nil:
		go n.loadGroups(uid)
	case down:
		n.dropGroups(uid)
	}
}

// Announce implements router.Cluster. A user's first login here reads
// their groups and subscribes to them, then waits for every node to
// confirm the presence that says so.
func (n *Node) Announce(id router.Identity, done func(ok bool, end func())) {
	n.mu.Lock()
	u := n.users[id.UID]
	if max := n.opts.MaxConnsPerUser; max > 0 && int(u.conns+u.announcing)+n.remoteConns(id.UID) >= max {
		n.mu.Unlock()
		done(false, func() {})
		return
	}
	u.announcing++
	u.typ = int8(id.Type)
	first, _ := n.setLocked(id.UID, u)
	n.mu.Unlock()
	end := func() {
		n.mu.Lock()
		u := n.users[id.UID]
		u.announcing--
		_, down := n.setLocked(id.UID, u)
		n.mu.Unlock()
		n.signal()
		n.groupsOnChange(id.UID, false, down)
	}
	if !first || !n.up.Load() || n.closed.Load() {
		// Online here already, so everywhere; or no bus: nobody to wait for.
		if first {
			go n.loadGroups(id.UID)
		}
		n.signal()
		done(true, end)
		return
	}
	go func() {
		// Before the login reply the group subjects are held, unless the
		// store is slow to say which: the wait is bounded.
		loaded := make(chan struct{})
		go func() { n.loadGroups(id.UID); close(loaded) }()
		select {
		case <-loaded:
		case <-time.After(n.opts.AnnounceTimeout):
		}
		n.mu.Lock()
		n.waiters = append(n.waiters, func() { done(true, end) })
		n.mu.Unlock()
		n.signal()
	}()
}

// remoteConns counts uid's connections on the other nodes alive.
func (n *Node) remoteConns(uid uint64) int {
	if !n.up.Load() {
		return 0
	}
	now := n.opts.Now()
	c := 0
	n.rmu.RLock()
	for _, r := range n.remotes {
		if n.alive(r, now) {
			c += int(r.users[uid].conns)
		}
	}
	n.rmu.RUnlock()
	return c
}

// nodesOf appends the alive nodes that hold a connection of uid.
func (n *Node) nodesOf(dst []uint64, uid uint64) []uint64 {
	if !n.up.Load() {
		return dst
	}
	now := n.opts.Now()
	n.rmu.RLock()
	for id, r := range n.remotes {
		if r.users[uid].conns > 0 && n.alive(r, now) {
			dst = append(dst, id)
		}
	}
	n.rmu.RUnlock()
	return dst
}

// RemoteAgents implements router.Cluster.
func (n *Node) RemoteAgents(dst []uint64) []uint64 {
	if !n.up.Load() {
		return dst
	}
	now := n.opts.Now()
	n.rmu.RLock()
	for _, r := range n.remotes {
		if !n.alive(r, now) {
			continue
		}
		for uid, u := range r.users {
			if u.typ == 1 && u.conns > 0 { // storage.UserAgent
				dst = append(dst, uid)
			}
		}
	}
	n.rmu.RUnlock()
	return dst
}

// Online implements router.Hub: a live connection here, or on another
// node while the bus is up.
func (n *Node) Online(uid uint64) bool {
	if n.local.Online(uid) {
		return true
	}
	if !n.up.Load() {
		return false
	}
	now := n.opts.Now()
	n.rmu.RLock()
	defer n.rmu.RUnlock()
	for _, r := range n.remotes {
		if r.users[uid].conns > 0 && n.alive(r, now) {
			return true
		}
	}
	return false
}

// Deliver implements router.Hub: the local connections, then one message
// to each other node that holds the user. t, if set, learns whether any
// connection on any node wrote the frame.
func (n *Node) Deliver(uid uint64, frame []byte, skip router.Session, t *router.Tracker) int {
	k := n.local.Deliver(uid, frame, skip, t)
	var buf [4]uint64
	for _, node := range n.nodesOf(buf[:0], uid) {
		var trk []*router.Tracker
		if t != nil {
			trk = []*router.Tracker{t}
		}
		n.sendPush(node, []uint64{uid}, trk, frame)
		k++
	}
	return k
}

// DeliverEach implements router.Cluster: one message per node.
func (n *Node) DeliverEach(uids []uint64, frame []byte, trk []router.Tracker) {
	type target struct {
		uids []uint64
		trk  []*router.Tracker
	}
	var targets map[uint64]*target
	var buf [4]uint64
	for i, uid := range uids {
		var t *router.Tracker
		if i < len(trk) {
			t = &trk[i]
		}
		n.local.Deliver(uid, frame, nil, t)
		for _, node := range n.nodesOf(buf[:0], uid) {
			if targets == nil {
				targets = make(map[uint64]*target)
			}
			tg := targets[node]
			if tg == nil {
				tg = &target{}
				targets[node] = tg
			}
			tg.uids = append(tg.uids, uid)
			if t != nil {
				tg.trk = append(tg.trk, t)
			}
		}
	}
	for node, tg := range targets {
		// The followed receivers come first in uids, so in tg.uids too:
		// tg.trk[i] is tg.uids[i]'s.
		n.sendPush(node, tg.uids, tg.trk, frame)
	}
}

// sendPush sends frame for uids to node; trk follow the first len(trk)
// of uids. A push the bus refuses counts as not written at once.
func (n *Node) sendPush(node uint64, uids []uint64, trk []*router.Tracker, frame []byte) {
	n.stats.pushes.Add(uint64(len(uids)))
	msg := appendPush(nil, trk, uids, frame)
	subj := n.opts.Prefix + ".n." + fmt.Sprintf("%016x", node)
	if len(trk) == 0 {
		_ = n.nc.Publish(subj, msg)
		return
	}
	p := &pendingPush{trk: trk, expect: map[uint64][]int{node: seq(len(trk))}}
	for _, t := range trk {
		t.Acquire()
	}
	n.request(subj, msg, p)
}

// appendPush appends a push message: what an acknowledging connection
// needs (trk[0]'s, which every tracker of one message shares), the number
// of followed receivers (the first len(trk) of uids), the receivers, the
// frame.
func appendPush(msg []byte, trk []*router.Tracker, uids []uint64, frame []byte) []byte {
	var meta *router.Tracker // every followed push of a message shares it
	if len(trk) > 0 {
		meta = trk[0]
	}
	nt := len(trk)
	if msg == nil {
		msg = make([]byte, 0, len(frame)+32+10*len(uids))
	}
	msg = append(msg, kindPush)
	msg = appendMeta(msg, meta)
	msg = binary.AppendUvarint(msg, uint64(nt))
	msg = binary.AppendUvarint(msg, uint64(len(uids)))
	for _, uid := range uids {
		msg = binary.AppendUvarint(msg, uid)
	}
	return append(msg, frame...)
}

// seq returns 0, 1, …, k-1.
func seq(k int) []int {
	s := make([]int, k)
	for i := range s {
		s[i] = i
	}
	return s
}

// request publishes a followed push and awaits the answers p expects;
// one the bus refuses, or past the cap of pushes awaited, counts as not
// written at once.
func (n *Node) request(subj string, msg []byte, p *pendingPush) {
	id := n.reqID.Add(1)
	p.deadline = n.opts.Now().Add(n.opts.PushTimeout)
	n.pmu.Lock()
	full := len(n.pushes) >= maxPendingPushes
	if !full {
		n.pushes[id] = p
	}
	n.pmu.Unlock()
	if full {
		_ = n.nc.Publish(subj, msg) // delivered maybe; counted as not
		n.settleAll(p)
		return
	}
	if err := n.nc.PublishRequest(subj, n.subjReply+strconv.FormatUint(id, 10), msg); err != nil {
		if p := n.takePush(id); p != nil {
			n.settleAll(p)
		}
	}
}

func (n *Node) takePush(id uint64) *pendingPush {
	n.pmu.Lock()
	defer n.pmu.Unlock()
	p := n.pushes[id]
	delete(n.pushes, id)
	return p
}

// Ack implements router.Hub: here, and on every other node of uid.
func (n *Node) Ack(uid uint64, conv string, group bool, seq uint64, skip router.Session) {
	n.local.Ack(uid, conv, group, seq, skip)
	var buf [4]uint64
	nodes := n.nodesOf(buf[:0], uid)
	if len(nodes) == 0 {
		return
	}
	msg := []byte{kindAck}
	msg = binary.AppendUvarint(msg, uid)
	msg = binary.AppendUvarint(msg, seq)
	msg = append(msg, boolByte(group))
	msg = append(msg, conv...)
	for _, node := range nodes {
		_ = n.nc.Publish(n.opts.Prefix+".n."+fmt.Sprintf("%016x", node), msg)
	}
}

// Disconnect implements router.Hub: here and on every other node of uid.
// The count includes the other nodes' connections by presence.
func (n *Node) Disconnect(uid uint64, code uint16, reason string) int {
	return n.disconnect(uid, false, "", code, reason)
}

// DisconnectTerminal implements router.Hub.
func (n *Node) DisconnectTerminal(uid uint64, terminal string, code uint16, reason string) int {
	return n.disconnect(uid, true, terminal, code, reason)
}

func (n *Node) disconnect(uid uint64, byTerminal bool, terminal string, code uint16, reason string) int {
	k := n.closeLocal(uid, byTerminal, terminal, code, reason)
	if !n.up.Load() {
		return k
	}
	if !byTerminal {
		k += n.remoteConns(uid)
	}
	// Every node, not only those presence names: a login announced
	// there a moment ago must close too.
	_ = n.nc.Publish(n.subjPresence, n.closeMessage(uid, byTerminal, terminal, code, reason))
	return k
}

// DisconnectCounted implements router.Cluster: it waits, at most
// AnnounceTimeout, for the other nodes to say how many they closed.
func (n *Node) DisconnectCounted(uid uint64, terminal string, code uint16, reason string) int {
	byTerminal := terminal != ""
	k := n.closeLocal(uid, byTerminal, terminal, code, reason)
	if !n.up.Load() {
		return k
	}
	done := make(chan struct{})
	var a *pendingAnnounce
	reply := n.awaitInto(&a, func() { close(done) })
	if err := n.publish(n.subjPresence, reply, n.closeMessage(uid, byTerminal, terminal, code, reason)); err != nil || reply == "" {
		return k
	}
	<-done // bounded: expire runs it past the deadline
	n.pmu.Lock()
	k += a.sum
	n.pmu.Unlock()
	return k
}

func (n *Node) closeLocal(uid uint64, byTerminal bool, terminal string, code uint16, reason string) int {
	if byTerminal {
		return n.local.DisconnectTerminal(uid, terminal, code, reason)
	}
	return n.local.Disconnect(uid, code, reason)
}

func (n *Node) closeMessage(uid uint64, byTerminal bool, terminal string, code uint16, reason string) []byte {
	msg := n.appendHeader(nil, kindCloseAll, 0)
	msg = binary.AppendUvarint(msg, uid)
	msg = binary.BigEndian.AppendUint16(msg, code)
	msg = append(msg, boolByte(byTerminal))
	msg = appendString(msg, terminal)
	return append(msg, reason...)
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}
