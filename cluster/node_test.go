package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/imgate/imgate/router"
)

// waitBound bounds every wait for something to cross the bus. The race
// detector slows everything several times, so the bound grows under it.
var waitBound = func() time.Duration {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				return 15 * time.Second
			}
		}
	}
	return 5 * time.Second
}()

// testPingInterval is long enough that no real heartbeat ticks during a
// test (they go every quarter of it): a node's liveness follows the
// injected clock alone.
const testPingInterval = time.Hour

// waitFor polls cond until it holds, failing the test past waitBound.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(waitBound)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("waited %v for %s", waitBound, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// clock is an injected Options.Now: it moves only when the test says.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Unix(1_700_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// delivery is one call of fakeHub.Deliver; the tracker's fields are
// copied as they were during the call.
type delivery struct {
	uid    uint64
	frame  []byte
	t      *router.Tracker
	seq    uint64
	conv   string
	group  bool
	convID uint64
}

type ackCall struct {
	uid   uint64
	conv  string
	group bool
	seq   uint64
}

type closeCall struct {
	uid      uint64
	terminal string // "" for Disconnect
	code     uint16
	reason   string
}

// fakeHub is a node's engine: uid → live connections, set by the test.
// Deliver takes one reference of a tracker for an accepting user (one
// acknowledging connection) and leaves its Done to the test, as engine
// calls Done once the frame is written or dropped.
type fakeHub struct {
	mu     sync.Mutex
	conns  map[uint64]int
	closeN int  // what Disconnect and DisconnectTerminal report
	quiet  bool // settle trackers at once as written and record nothing
	dels   []delivery
	acks   []ackCall
	closes []closeCall
}

var _ router.Hub = (*fakeHub)(nil)

func newFakeHub() *fakeHub { return &fakeHub{conns: make(map[uint64]int)} }

func (h *fakeHub) Deliver(uid uint64, frame []byte, _ router.Session, t *router.Tracker) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := h.conns[uid]
	if k == 0 {
		return 0
	}
	if h.quiet {
		if t != nil {
			t.Acquire()
			t.Done(true)
		}
		return k
	}
	d := delivery{uid: uid, frame: bytes.Clone(frame), t: t}
	if t != nil {
		t.Acquire()
		d.seq, d.conv, d.group, d.convID = t.Seq, t.Conv, t.Group, t.ConvID
	}
	h.dels = append(h.dels, d)
	return k
}

func (h *fakeHub) Disconnect(uid uint64, code uint16, reason string) int {
	return h.close(closeCall{uid, "", code, reason})
}

func (h *fakeHub) DisconnectTerminal(uid uint64, terminal string, code uint16, reason string) int {
	return h.close(closeCall{uid, terminal, code, reason})
}

func (h *fakeHub) close(c closeCall) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.quiet {
		h.closes = append(h.closes, c)
	}
	return h.closeN
}

func (h *fakeHub) Online(uid uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conns[uid] > 0
}

func (h *fakeHub) Ack(uid uint64, conv string, group bool, seq uint64, _ router.Session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.quiet {
		h.acks = append(h.acks, ackCall{uid, conv, group, seq})
	}
}

func (h *fakeHub) deliveries(uid uint64) []delivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ds []delivery
	for _, d := range h.dels {
		if d.uid == uid {
			ds = append(ds, d)
		}
	}
	return ds
}

// waitDelivery waits for the n-th delivery to uid (from 1) and returns it.
func (h *fakeHub) waitDelivery(tb testing.TB, uid uint64, n int) delivery {
	tb.Helper()
	waitFor(tb, fmt.Sprintf("delivery %d to uid %d", n, uid), func() bool { return len(h.deliveries(uid)) >= n })
	return h.deliveries(uid)[n-1]
}

func (h *fakeHub) ackCalls() []ackCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]ackCall(nil), h.acks...)
}

func (h *fakeHub) closeCalls() []closeCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]closeCall(nil), h.closes...)
}

// testCluster is one embedded NATS server and a subject prefix no other
// test uses.
type testCluster struct {
	url    string
	prefix string
	nodes  []*testNode
}

var prefixes atomic.Uint64

func newTestCluster(tb testing.TB) *testCluster {
	tb.Helper()
	s, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		tb.Fatal(err)
	}
	s.Start()
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(waitBound) {
		tb.Fatal("nats server not ready")
	}
	return &testCluster{url: s.ClientURL(), prefix: "imgatetest" + strconv.FormatUint(prefixes.Add(1), 10)}
}

type testNode struct {
	*Node
	hub   *fakeHub
	clock *clock
}

// join dials a node with its own fake hub and frozen clock; opts' zero
// PingInterval means testPingInterval.
func (c *testCluster) join(tb testing.TB, opts Options) *testNode {
	tb.Helper()
	tn := &testNode{hub: newFakeHub(), clock: newClock()}
	opts.Prefix = c.prefix
	opts.Now = tn.clock.Now
	if opts.PingInterval == 0 {
		opts.PingInterval = testPingInterval
	}
	n, err := Dial(c.url, tn.hub, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(n.Close)
	tn.Node = n
	c.nodes = append(c.nodes, tn)
	return tn
}

// meet waits until every node knows every other.
func (c *testCluster) meet(tb testing.TB) {
	tb.Helper()
	waitFor(tb, "the nodes to meet", func() bool {
		for _, n := range c.nodes {
			if n.Stats().Nodes != len(c.nodes)-1 {
				return false
			}
		}
		return true
	})
}

// watch subscribes a plain NATS connection to subj, as a second
// subscriber beside the nodes.
func (c *testCluster) watch(tb testing.TB, subj string) chan *nats.Msg {
	tb.Helper()
	nc := c.connect(tb)
	ch := make(chan *nats.Msg, 64)
	if _, err := nc.ChanSubscribe(subj, ch); err != nil {
		tb.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		tb.Fatal(err)
	}
	return ch
}

func (c *testCluster) connect(tb testing.TB) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(c.url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// gone waits until the server holds no subscriber of n's node subject:
// the server dropped n's bus connection, after routing all it had sent.
func (c *testCluster) gone(tb testing.TB, n *testNode) {
	tb.Helper()
	probe := c.connect(tb)
	subj := c.prefix + ".n." + n.Name()
	waitFor(tb, subj+" without subscribers", func() bool {
		_, err := probe.Request(subj, nil, 50*time.Millisecond)
		return errors.Is(err, nats.ErrNoResponders)
	})
}

// drain waits until n has applied every presence message the server
// routed before the call. A node id no test node has says it holds a
// marker user, then leaves: the messages of one connection arrive in
// order, behind what was routed before them.
func (c *testCluster) drain(tb testing.TB, n *testNode) {
	tb.Helper()
	probe := c.connect(tb)
	ghost := &Node{id: 0x600d | prefixes.Add(1)<<16}
	const marker = 1 << 40
	send := func(msg []byte) {
		if err := probe.Publish(c.prefix+".p", msg); err != nil {
			tb.Fatal(err)
		}
	}
	send(appendEntries(ghost.appendHeader(nil, kindDelta, 1), []entry{{uid: marker, conns: 1}}))
	waitFor(tb, "the marker's presence", func() bool { return n.Online(marker) })
	send(ghost.appendHeader(nil, kindBye, 1))
	waitFor(tb, "the marker's bye", func() bool { return !n.Online(marker) })
}

// hold gives uid conns live connections on n, as engine does: its
// registry first, then Presence.
func (n *testNode) hold(uid uint64, conns int) {
	n.hub.mu.Lock()
	n.hub.conns[uid] = conns
	n.hub.mu.Unlock()
	n.Presence(router.Identity{UID: uid}, conns)
}

// sees waits until n counts want connections of uid on the other nodes.
func (n *testNode) sees(tb testing.TB, uid uint64, want int) {
	tb.Helper()
	waitFor(tb, fmt.Sprintf("%d connections of uid %d elsewhere", want, uid), func() bool { return n.remoteConns(uid) == want })
}

func waitOutcome(tb testing.TB, ch <-chan bool) bool {
	tb.Helper()
	select {
	case w := <-ch:
		return w
	case <-time.After(waitBound):
		tb.Fatalf("no outcome within %v", waitBound)
		return false
	}
}

// TestSection8_PresenceCrossesNodes: presence is cluster-wide (PROTOCOL
// §8): a user's first connection on one node makes them online on the
// others, their last one offline, and a node that joins later learns
// what is online already from the snapshots it asks for.
func TestSection8_PresenceCrossesNodes(t *testing.T) {
	c := newTestCluster(t)
	a := c.join(t, Options{})
	b := c.join(t, Options{})

	a.hold(7, 1)
	waitFor(t, "uid 7 online on b", func() bool { return b.Online(7) })
	a.hold(7, 0)
	waitFor(t, "uid 7 offline on b", func() bool { return !b.Online(7) })

	a.hold(7, 2)
	b.hold(8, 1)
	a.sees(t, 8, 1)
	b.sees(t, 7, 2)
	// No heartbeat ticks within the test: only the snapshots asked for on
	// joining can tell the third node.
	late := c.join(t, Options{})
	waitFor(t, "the late node to learn uids 7 and 8", func() bool {
		return late.remoteConns(7) == 2 && late.remoteConns(8) == 1
	})
	if late.Online(9) {
		t.Fatal("uid 9 online on the late node: nobody holds it")
	}
	c.meet(t)

	// An agent's type crosses with its presence (getReceiver's pool).
	b.Presence(router.Identity{UID: 10, Type: 1}, 1)
	waitFor(t, "agent 10 on the other nodes", func() bool {
		return slices.Equal(a.RemoteAgents(nil), []uint64{10}) && slices.Equal(late.RemoteAgents(nil), []uint64{10})
	})
	b.Presence(router.Identity{UID: 10, Type: 1}, 0)
	waitFor(t, "agent 10 gone from the other nodes", func() bool {
		return len(a.RemoteAgents(nil)) == 0 && len(late.RemoteAgents(nil)) == 0
	})
}

// TestSection8_SnapshotInChunks: a snapshot larger than one message
// (snapshotChunk users) reaches a joining node whole.
func TestSection8_SnapshotInChunks(t *testing.T) {
	c := newTestCluster(t)
	a := c.join(t, Options{})
	const users = snapshotChunk + 100
	for uid := uint64(1); uid <= users; uid++ {
		a.hold(uid, 1)
	}
	late := c.join(t, Options{})
	waitFor(t, "every user on the late node", func() bool {
		late.rmu.RLock()
		defer late.rmu.RUnlock()
		rm := late.remotes[a.id]
		return rm != nil && rm.synced && len(rm.users) == users
	})
	for _, uid := range []uint64{1, snapshotChunk, snapshotChunk + 1, users} {
		if !late.Online(uid) {
			t.Errorf("uid %d offline on the late node", uid)
		}
	}
}

// TestSection8_DeadNodeExpires: the users of a node that dies without a
// word are offline once it was not heard from for 1.5 × PingInterval
// (PROTOCOL §8: within 2 × -ping-interval + 1 s).
func TestSection8_DeadNodeExpires(t *testing.T) {
	c := newTestCluster(t)
	a := c.join(t, Options{})
	b := c.join(t, Options{})
	c.meet(t)
	a.hold(7, 1)
	waitFor(t, "uid 7 online on b", func() bool { return b.Online(7) })

	// a dies: its bus connection goes without a bye, and no heartbeat
	// follows. Once b applied all a sent, b's clock says when b last
	// heard of a: it stood still since b's join.
	a.nc.Close()
	c.gone(t, a)
	c.drain(t, b)
	ttl := testPingInterval * 3 / 2
	b.clock.Advance(ttl - time.Millisecond)
	if !b.Online(7) || b.Stats().Nodes != 1 {
		t.Fatalf("before the expiry: online %v, nodes %d; want true, 1", b.Online(7), b.Stats().Nodes)
	}
	b.clock.Advance(time.Millisecond)
	if b.Online(7) {
		t.Error("uid 7 still online 1.5 × PingInterval after its node was last heard")
	}
	if n := b.Stats().Nodes; n != 0 {
		t.Errorf("b counts %d other nodes; want 0", n)
	}
	if k := b.Deliver(7, textFrameOf("x"), nil, nil); k != 0 {
		t.Errorf("Deliver to uid 7 reached %d; want 0", k)
	}
}

// TestSection8_ByeTakesUsersOffline: a node that closes cleanly takes its
// users offline everywhere at once, without waiting for the expiry.
func TestSection8_ByeTakesUsersOffline(t *testing.T) {
	c := newTestCluster(t)
	a := c.join(t, Options{})
	b := c.join(t, Options{})
	c.meet(t)
	a.hold(7, 1)
	waitFor(t, "uid 7 online on b", func() bool { return b.Online(7) })
	a.Close()
	// b's clock stands still: only the bye can do it.
	waitFor(t, "uid 7 offline on b", func() bool { return !b.Online(7) && b.Stats().Nodes == 0 })
}

// TestSection8_PushOutcomeCrossesNodes: a followed push to a user on
// another node (PROTOCOL §7.2, §8) carries its message's name to that
// node's connections, and its outcome comes back: written only if a
// connection there wrote it.
func TestSection8_PushOutcomeCrossesNodes(t *testing.T) {
	c := newTestCluster(t)
	a := c.join(t, Options{})
	b := c.join(t, Options{})
	c.meet(t)
	tests := []struct {
		name    string
		uid     uint64
		written bool
		group   bool
		conv    string
		convID  uint64
	}{
		{name: "private written", uid: 7, written: true, conv: "peer", convID: 9},
		{name: "group dropped", uid: 8, written: false, group: true, conv: "g1", convID: 11},
	}
	notWritten := uint64(0)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b.hold(tc.uid, 1)
			a.sees(t, tc.uid, 1)
			got := make(chan bool, 2)
			tr := router.NewTracker(func(w bool) { got <- w })
			tr.Seq, tr.Conv, tr.ConvID, tr.Group = 42, tc.conv, tc.convID, tc.group
			frame := textFrameOf(`{"command":11,"data":{"seq":42}}`)
			if k := a.Deliver(tc.uid, frame, nil, tr); k != 1 {
				t.Fatalf("Deliver reached %d; want 1 (b)", k)
			}
			tr.Release()

			d := b.hub.waitDelivery(t, tc.uid, 1)
			if !bytes.Equal(d.frame, frame) {
				t.Errorf("b got frame %q; want %q", d.frame, frame)
			}
			if d.t == nil {
				t.Fatal("b's delivery is not followed")
			}
			if d.seq != 42 || d.conv != tc.conv || d.convID != tc.convID || d.group != tc.group {
				t.Errorf("b's tracker: seq %d conv %q convID %d group %v; want 42 %q %d %v",
					d.seq, d.conv, d.convID, d.group, tc.conv, tc.convID, tc.group)
			}
			select {
			case w := <-got:
				t.Fatalf("outcome %v before b's connection settled", w)
			default:
			}
			if n := a.Stats().Awaiting; n != 1 {
				t.Errorf("a awaits %d pushes; want 1", n)
			}

			d.t.Done(tc.written)
			if w := waitOutcome(t, got); w != tc.written {
				t.Errorf("a's tracker reports written=%v; want %v", w, tc.written)
			}
			if !tc.written {
				notWritten++
			}
			st := a.Stats()
			if st.Awaiting != 0 || st.NotWritten != notWritten || st.Timeouts != 0 {
				t.Errorf("a's stats %+v; want awaiting 0, not written %d, timeouts 0", st, notWritten)
			}
		})
	}
}

// TestSection8_UnansweredPushNotWritten: a push no node answers for
// within PushTimeout, or one sent to a node that is gone, counts as not
// written, so its message stays queued (PROTOCOL §8: nothing acked is
// lost with a node).
func TestSection8_UnansweredPushNotWritten(t *testing.T) {
	const pushTimeout = 200 * time.Millisecond
	t.Run("timeout", func(t *testing.T) {
		c := newTestCluster(t)
		a := c.join(t, Options{PushTimeout: pushTimeout})
		b := c.join(t, Options{})
		c.meet(t)
		b.hold(7, 1)
		a.sees(t, 7, 1)

		got := make(chan bool, 2)
		tr := router.NewTracker(func(w bool) { got <- w })
		a.Deliver(7, textFrameOf("late"), nil, tr)
		tr.Release()
		late := b.hub.waitDelivery(t, 7, 1) // b's connection never says
		if n := a.Stats().Awaiting; n != 1 {
			t.Fatalf("a awaits %d pushes; want 1", n)
		}
		// The deadline is strictly passed; the sweep runs on a real ticker.
		a.clock.Advance(pushTimeout + time.Millisecond)
		if w := waitOutcome(t, got); w {
			t.Fatal("an unanswered push counted as written")
		}
		if st := a.Stats(); st.Timeouts != 1 || st.NotWritten != 1 || st.Awaiting != 0 {
			t.Errorf("a's stats %+v; want timeouts 1, not written 1, awaiting 0", st)
		}

		// b's answer comes after all: a has settled the push and ignores
		// it. A second push answered after it on the same connections
		// proves a took the late answer first.
		late.t.Done(true)
		got2 := make(chan bool, 1)
		tr2 := router.NewTracker(func(w bool) { got2 <- w })
		a.Deliver(7, textFrameOf("second"), nil, tr2)
		tr2.Release()
		b.hub.waitDelivery(t, 7, 2).t.Done(true)
		if w := waitOutcome(t, got2); !w {
			t.Error("the second push counted as not written")
		}
		select {
		case w := <-got:
			t.Errorf("the first push was settled twice, again as written=%v", w)
		default:
		}
		if st := a.Stats(); st.Timeouts != 1 || st.NotWritten != 1 {
			t.Errorf("a's stats %+v; want timeouts 1, not written 1", st)
		}
	})

	t.Run("node gone", func(t *testing.T) {
		c := newTestCluster(t)
		a := c.join(t, Options{PushTimeout: pushTimeout})
		b := c.join(t, Options{})
		c.meet(t)
		b.hold(7, 1)
		a.sees(t, 7, 1)

		// b dies without a bye; a's clock stands still, so a still counts
		// b alive and holding uid 7.
		b.nc.Close()
		c.gone(t, b)

		got := make(chan bool, 1)
		tr := router.NewTracker(func(w bool) { got <- w })
		if k := a.Deliver(7, textFrameOf("x"), nil, tr); k != 1 {
			t.Fatalf("Deliver reached %d; want 1 (b, by presence)", k)
		}
		tr.Release()
		if w := waitOutcome(t, got); w {
			t.Fatal("a push to a gone node counted as written")
		}
		if st := a.Stats(); st.Timeouts != 0 || st.NotWritten != 1 || st.Awaiting != 0 {
			t.Errorf("a's stats %+v; want timeouts 0 (no-responders, not the clock), not written 1, awaiting 0", st)
		}
	})
}

// outcomes is a router.Follower that reports each tracker's outcome by
// its Index.
type outcomes chan [2]int

func (o outcomes) Followed(t *router.Tracker, written bool) {
	w := 0
	if written {
		w = 1
	}
	o <- [2]int{int(t.Index), w}
}

// TestSection8_DeliverEachOneMessagePerNode: a fan-out sends one bus
// message per node that holds any receiver, not one per receiver, and
// each followed receiver still gets its own outcome.
func TestSection8_DeliverEachOneMessagePerNode(t *testing.T) {
	c := newTestCluster(t)
	a := c.join(t, Options{})
	b := c.join(t, Options{})
	d := c.join(t, Options{})
	c.meet(t)
	onB := []uint64{21, 22, 23, 24, 25}
	onD := []uint64{26, 27}
	for _, uid := range onB {
		b.hold(uid, 1)
	}
	for _, uid := range onD {
		d.hold(uid, 1)
	}
	for _, uid := range append(append([]uint64{}, onB...), onD...) {
		a.sees(t, uid, 1)
	}
	watchB := c.watch(t, c.prefix+".n."+b.Name())
	watchD := c.watch(t, c.prefix+".n."+d.Name())

	// The first two of b's receivers and the first of d's are followed
	// (DeliverEach follows a prefix of uids).
	uids := []uint64{21, 22, 26, 23, 24, 25, 27}
	const followed = 3
	out := make(outcomes, followed)
	trk := make([]router.Tracker, followed)
	for i := range trk {
		trk[i].Init(out)
		trk[i].Index = int32(i)
		trk[i].Seq, trk[i].Conv, trk[i].ConvID, trk[i].Group = 5, "g", 77, true
	}
	frame := textFrameOf("group push")
	a.DeliverEach(uids, frame, trk)
	for i := range trk {
		trk[i].Release()
	}

	for _, uid := range onB {
		b.hub.waitDelivery(t, uid, 1)
	}
	for _, uid := range onD {
		d.hub.waitDelivery(t, uid, 1)
	}
	settle := map[uint64]bool{21: true, 22: false, 26: true}
	for uid, w := range settle {
		del := b.hub.deliveries(uid)
		if uid == 26 {
			del = d.hub.deliveries(uid)
		}
		if del[0].t == nil || del[0].seq != 5 || del[0].conv != "g" || !del[0].group || del[0].convID != 77 {
			t.Fatalf("uid %d's delivery is not followed as trk's: %+v", uid, del[0])
		}
		del[0].t.Done(w)
	}
	for _, uid := range []uint64{23, 24, 25, 27} {
		del := b.hub.deliveries(uid)
		if uid == 27 {
			del = d.hub.deliveries(uid)
		}
		if del[0].t != nil {
			t.Errorf("uid %d's delivery is followed; only the first %d of uids are", uid, followed)
		}
	}
	want := map[int]int{0: 1, 1: 0, 2: 1} // index → written, by uids 21, 22, 26
	for range followed {
		select {
		case o := <-out:
			if want[o[0]] != o[1] {
				t.Errorf("tracker %d reports written=%d; want %d", o[0], o[1], want[o[0]])
			}
			delete(want, o[0])
		case <-time.After(waitBound):
			t.Fatalf("outcomes missing for trackers %v", want)
		}
	}

	// An ack a sends after the push to each node marks the end of what
	// the push sent: messages from one connection arrive in order.
	a.Ack(21, "g", true, 5, nil)
	a.Ack(26, "g", true, 5, nil)
	for name, w := range map[string]struct {
		ch       chan *nats.Msg
		nt, uids uint64
	}{"b": {watchB, 2, 5}, "d": {watchD, 1, 2}} {
		var pushes []*nats.Msg
	read:
		for {
			select {
			case m := <-w.ch:
				if len(m.Data) > 0 && m.Data[0] == kindAck {
					break read
				}
				pushes = append(pushes, m)
			case <-time.After(waitBound):
				t.Fatalf("no ack on %s's subject", name)
			}
		}
		if len(pushes) != 1 {
			t.Fatalf("%d messages on %s's subject for one fan-out; want 1", len(pushes), name)
		}
		r := &reader{b: pushes[0].Data}
		kind, seq, convID, group, conv := r.byte(), r.uvarint(), r.uvarint(), r.byte(), r.string()
		nt, k := r.uvarint(), r.uvarint()
		if r.err != nil || kind != kindPush || seq != 5 || convID != 77 || group != 1 || conv != "g" || nt != w.nt || k != w.uids {
			t.Errorf("push to %s: kind %q seq %d convID %d group %d conv %q followed %d uids %d (err %v); want 'P' 5 77 1 \"g\" %d %d",
				name, kind, seq, convID, group, conv, nt, k, r.err, w.nt, w.uids)
		}
	}
}

// TestSection8_AckAndCloseCrossNodes: acks (PROTOCOL §7.2) reach the
// user's connections on every node that holds them, closes (cmd 14,
// logout §1.5) every node, and a counted close sums every node's count.
func TestSection8_AckAndCloseCrossNodes(t *testing.T) {
	c := newTestCluster(t)
	a := c.join(t, Options{})
	b := c.join(t, Options{})
	d := c.join(t, Options{})
	c.meet(t)
	a.hub.closeN, b.hub.closeN, d.hub.closeN = 1, 2, 0
	a.hold(7, 1)
	b.hold(7, 1)
	d.hold(8, 1)
	a.sees(t, 7, 1)
	a.sees(t, 8, 1)

	a.Ack(7, "peer", false, 3, nil)
	a.Ack(8, "g9", true, 4, nil) // after the ack of 7 on a's connection
	want7 := ackCall{7, "peer", false, 3}
	waitFor(t, "b's hub to get the ack", func() bool { return len(b.hub.ackCalls()) == 1 })
	if got := b.hub.ackCalls()[0]; got != want7 {
		t.Errorf("b's hub got ack %+v; want %+v", got, want7)
	}
	if got := a.hub.ackCalls(); len(got) != 2 || got[0] != want7 {
		t.Errorf("a's own hub got acks %+v; want %+v first", got, want7)
	}
	waitFor(t, "d's hub to get the ack of 8", func() bool { return len(d.hub.ackCalls()) >= 1 })
	if got := d.hub.ackCalls(); len(got) != 1 || got[0] != (ackCall{8, "g9", true, 4}) {
		t.Errorf("d's hub got acks %+v; want only uid 8's (d holds no connection of 7)", got)
	}

	tests := []struct {
		name  string
		close func() int
		want  closeCall
		k     int
	}{
		{"disconnect", func() int { return a.Disconnect(7, 1000, "bye") },
			closeCall{7, "", 1000, "bye"}, 1 + 1 /* b's by presence */},
		{"disconnect terminal", func() int { return a.DisconnectTerminal(7, "web", 1001, "gone") },
			closeCall{7, "web", 1001, "gone"}, 1 /* a's only: presence knows no terminals */},
		{"counted", func() int { return a.DisconnectCounted(7, "", 1008, "x") },
			closeCall{7, "", 1008, "x"}, 1 + 2 + 0},
		{"counted terminal", func() int { return a.DisconnectCounted(7, "web", 1008, "y") },
			closeCall{7, "web", 1008, "y"}, 1 + 2 + 0},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A counted close blocks until every node answered: bound it.
			closed := make(chan int, 1)
			go func() { closed <- tc.close() }()
			select {
			case k := <-closed:
				if k != tc.k {
					t.Errorf("closed %d; want %d", k, tc.k)
				}
			case <-time.After(waitBound):
				t.Fatal("the close did not return")
			}
			for name, h := range map[string]*fakeHub{"a": a.hub, "b": b.hub, "d": d.hub} {
				waitFor(t, name+"'s hub to close", func() bool { return len(h.closeCalls()) > i })
				if got := h.closeCalls()[i]; got != tc.want {
					t.Errorf("%s's hub closed %+v; want %+v", name, got, tc.want)
				}
			}
		})
	}
}

// TestSection8_Announce: a login is refused when the user holds
// -max-conns-per-user connections over all nodes; otherwise done runs
// once every node knows of it (PROTOCOL §8: online cluster-wide before
// the login reply), or once AnnounceTimeout passed.
func TestSection8_Announce(t *testing.T) {
	c := newTestCluster(t)
	a := c.join(t, Options{MaxConnsPerUser: 2})
	b := c.join(t, Options{MaxConnsPerUser: 2})
	c.meet(t)
	type result struct {
		ok       bool
		bOnline  bool
		bCounted int
		end      func()
	}
	tests := []struct {
		name       string
		uid        uint64
		onA, onB   int
		wantOK     bool
		wantBCount int // at least: b's count of the user's connections on a, in done
	}{
		{name: "first login anywhere", uid: 31, wantOK: true, wantBCount: 1},
		{name: "one on the other node", uid: 32, onB: 1, wantOK: true, wantBCount: 1},
		// Online here already, so everywhere: done runs at once.
		{name: "one on this node", uid: 33, onA: 1, wantOK: true, wantBCount: 1},
		{name: "cap on the other node", uid: 34, onB: 2, wantOK: false},
		{name: "cap over both nodes", uid: 35, onA: 1, onB: 1, wantOK: false, wantBCount: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.onA > 0 {
				a.hold(tc.uid, tc.onA)
			}
			if tc.onB > 0 {
				b.hold(tc.uid, tc.onB)
			}
			a.sees(t, tc.uid, tc.onB)
			b.sees(t, tc.uid, tc.onA)

			res := make(chan result, 1)
			a.Announce(router.Identity{UID: tc.uid}, func(ok bool, end func()) {
				res <- result{ok, b.Online(tc.uid), b.remoteConns(tc.uid), end}
			})
			var r result
			select {
			case r = <-res:
			case <-time.After(waitBound):
				t.Fatal("done did not run")
			}
			if r.ok != tc.wantOK {
				t.Fatalf("ok = %v; want %v", r.ok, tc.wantOK)
			}
			if !r.ok {
				r.end()
				if n := a.remoteConns(tc.uid); n != tc.onB {
					t.Errorf("a counts %d connections elsewhere after a refusal; want %d", n, tc.onB)
				}
				return
			}
			if !r.bOnline || r.bCounted < tc.wantBCount {
				t.Errorf("in done, b: online %v, counts %d on a; want true, at least %d", r.bOnline, r.bCounted, tc.wantBCount)
			}
			// The login registers, then ends its announce, as engine does.
			a.hold(tc.uid, tc.onA+1)
			r.end()
			b.sees(t, tc.uid, tc.onA+1)
		})
	}

	t.Run("a node that never answers", func(t *testing.T) {
		// d counts as alive to a (a's clock stands still) but is gone
		// from the bus: a's wait ends at AnnounceTimeout.
		d := c.join(t, Options{})
		c.meet(t)
		d.nc.Close()
		res := make(chan bool, 1)
		a.Announce(router.Identity{UID: 36}, func(ok bool, end func()) {
			end()
			res <- ok
		})
		// The wait's deadline is set when the announce goes out, on a's
		// goroutine: move the clock only after that.
		waitFor(t, "the announce to go out", func() bool {
			a.pmu.Lock()
			defer a.pmu.Unlock()
			return len(a.announces) == 1
		})
		if a.Stats().Nodes != 2 {
			t.Fatal("a no longer counts d alive")
		}
		select {
		case ok := <-res:
			t.Fatalf("done ran (ok %v) before AnnounceTimeout though d never answered", ok)
		default:
		}
		a.clock.Advance(DefaultAnnounceTimeout + time.Millisecond)
		select {
		case ok := <-res:
			if !ok {
				t.Error("ok = false; want true: the wait ran out, the login goes on")
			}
		case <-time.After(waitBound):
			t.Fatal("done did not run after AnnounceTimeout")
		}
		// d is suspect now: the next first login does not wait for it.
		next := make(chan bool, 1)
		a.Announce(router.Identity{UID: 37}, func(ok bool, end func()) {
			end()
			next <- ok
		})
		select {
		case ok := <-next:
			if !ok {
				t.Error("ok = false for the next login")
			}
		case <-time.After(waitBound):
			t.Fatal("the next login waited again for the node that did not answer")
		}
	})
}

// Bytes on the presence subject that are not a node's (a stray "Hello
// world") make no phantom node: logins do not wait for it and the
// metrics do not count it.
func TestSection8_StrayPresenceMakesNoNode(t *testing.T) {
	c := newTestCluster(t)
	a := c.join(t, Options{})
	b := c.join(t, Options{})
	c.meet(t)
	probe := c.connect(t)
	for _, junk := range []string{"Hello world, testing", "B12345678x", "Zzzzzzzzzzzz"} {
		if err := probe.Publish(c.prefix+".p", []byte(junk)); err != nil {
			t.Fatal(err)
		}
	}
	c.drain(t, a)
	if n := a.Stats().Nodes; n != 1 {
		t.Fatalf("a counts %d nodes after stray bytes, want 1 (b)", n)
	}
	a.rmu.RLock()
	known := len(a.remotes)
	a.rmu.RUnlock()
	if known != 1 {
		t.Fatalf("a knows %d remotes, want 1", known)
	}
	done := make(chan struct{})
	a.Announce(router.Identity{UID: 41}, func(bool, func()) { close(done) })
	select {
	case <-done: // b answered; nothing else awaited
	case <-time.After(waitBound):
		t.Fatal("the login waited for a phantom node")
	}
	_ = b
}

// FuzzBusMessages feeds arbitrary bytes to every handler of bus
// messages: whatever arrives, a node must not panic.
func FuzzBusMessages(f *testing.F) {
	c := newTestCluster(f)
	tn := c.join(f, Options{})
	n := tn.Node
	tn.hub.mu.Lock()
	tn.hub.quiet = true
	for uid := uint64(1); uid <= 8; uid++ {
		tn.hub.conns[uid] = 1
	}
	tn.hub.mu.Unlock()

	other := &Node{id: 0x42}
	hdr := func(kind byte, seq uint64) []byte { return other.appendHeader(nil, kind, seq) }
	es := []entry{{uid: 7, conns: 2, typ: 1}, {uid: 8, conns: 0}}
	snap := binary.AppendUvarint(hdr(kindSnapshot, 2), 0)
	snap = appendEntries(append(snap, 1), es)
	tr := router.NewTracker(nil)
	tr.Seq, tr.Conv, tr.ConvID, tr.Group = 9, "peer", 3, false
	push := appendMeta([]byte{kindPush}, tr)
	push = binary.AppendUvarint(push, 2) // followed
	push = binary.AppendUvarint(push, 3) // uids
	for _, uid := range []uint64{7, 8, 9} {
		push = binary.AppendUvarint(push, uid)
	}
	push = append(push, `{"command":11}`...)
	ack := binary.AppendUvarint([]byte{kindAck}, 7)
	ack = append(binary.AppendUvarint(ack, 5), 1)
	ack = append(ack, "g1"...)
	for _, seed := range [][]byte{
		nil,
		{kindHeartbeat},
		hdr(kindHeartbeat, 5),
		appendEntries(hdr(kindDelta, 1), es),
		appendEntries(hdr(kindDelta, 9), es),
		snap,
		binary.AppendUvarint(hdr(kindQuery, 0), 0),
		binary.AppendUvarint(hdr(kindQuery, 0), n.id),
		hdr(kindBye, 3),
		other.closeMessage(7, false, "", 1000, "bye"),
		other.closeMessage(7, true, "web", 1008, "logout"),
		push,
		ack,
		// Push outcomes (receivers' bits) and presence confirmations.
		{0xff},
		{0x01, 0x00, 2},
		append(binary.BigEndian.AppendUint64(nil, other.id), 0x05),
		binary.AppendUvarint(binary.BigEndian.AppendUint64(nil, other.id), 3), // a node's confirmation, with a count
		binary.AppendUvarint(binary.BigEndian.AppendUint64(nil, other.id), 1<<40),
	} {
		f.Add(seed)
	}

	f.Fuzz(func(t *testing.T, b []byte) {
		n.onPresence(&nats.Msg{Subject: n.subjPresence, Reply: c.prefix + ".fuzz", Data: b})
		n.onPresence(&nats.Msg{Subject: n.subjPresence, Data: b})
		n.onNode(&nats.Msg{Subject: c.prefix + ".n." + n.Name(), Reply: c.prefix + ".fuzz", Data: b})
		n.onNode(&nats.Msg{Subject: c.prefix + ".n." + n.Name(), Data: b})

		// A reply to a push awaiting three receivers' outcomes, and to
		// an announce awaiting the node b's first 8 bytes name.
		pid := n.reqID.Add(1)
		expect := map[uint64][]int{other.id: {0, 1, 2}}
		if len(b) >= 8 {
			expect[binary.BigEndian.Uint64(b)] = []int{0, 1, 2}
		}
		var trk []*router.Tracker
		for range 3 {
			tk := router.NewTracker(nil)
			for range expect {
				tk.Acquire() // one reference per node awaited
			}
			tk.Release() // the creator's
			trk = append(trk, tk)
		}
		aid := n.reqID.Add(1)
		need := map[uint64]bool{other.id: true}
		if len(b) >= 8 {
			need[binary.BigEndian.Uint64(b)] = true
		}
		n.pmu.Lock()
		n.pushes[pid] = &pendingPush{trk: trk, expect: expect, deadline: n.opts.Now().Add(time.Hour)}
		n.announces[aid] = &pendingAnnounce{need: need, fns: []func(){func() {}}, deadline: n.opts.Now().Add(time.Hour)}
		n.pmu.Unlock()
		for _, id := range []uint64{pid, aid, 0} {
			n.onReply(&nats.Msg{Subject: n.subjReply + strconv.FormatUint(id, 10), Data: b})
		}
		n.onReply(&nats.Msg{Subject: n.subjReply + string(b), Data: b})
		n.onReply(&nats.Msg{Subject: string(b), Data: b})
		n.pmu.Lock()
		delete(n.announces, aid)
		n.pmu.Unlock()
	})
}

// groupOf is a store's UserGroups for tests: fixed memberships.
func groupOf(m map[uint64][]uint64) func(uint64) ([]uint64, error) {
	var mu sync.Mutex
	return func(uid uint64) ([]uint64, error) {
		mu.Lock()
		defer mu.Unlock()
		return append([]uint64(nil), m[uid]...), nil
	}
}

// subscribed waits until n holds the subject of group gid (want) or not.
func (n *testNode) subscribed(tb testing.TB, gid uint64, want bool) {
	tb.Helper()
	waitFor(tb, fmt.Sprintf("group %d's subject held: %v", gid, want), func() bool {
		n.gmu.Lock()
		_, ok := n.gsubs[gid]
		n.gmu.Unlock()
		return ok == want && n.nc.Flush() == nil
	})
}

// PROTOCOL §5, §8: a group message is one publish on the group's subject,
// held only by nodes with live members; each followed member's outcome
// comes from its node. A join heard from another node makes its node
// hold the subject; the last local member leaving lets it go.
func TestSection8_GroupMessageIsOnePublish(t *testing.T) {
	c := newTestCluster(t)
	const gid = 9
	groups := groupOf(map[uint64][]uint64{31: {gid}, 32: {gid}})
	a := c.join(t, Options{UserGroups: groups})
	b := c.join(t, Options{UserGroups: groups})
	d := c.join(t, Options{UserGroups: groups})
	e := c.join(t, Options{UserGroups: groups})
	c.meet(t)
	b.hold(31, 1)
	d.hold(32, 1)
	e.hold(33, 1) // not a member
	b.subscribed(t, gid, true)
	d.subscribed(t, gid, true)
	a.sees(t, 31, 1)
	a.sees(t, 32, 1)
	a.sees(t, 33, 1)
	watch := c.watch(t, c.prefix+".g.9")

	out := make(outcomes, 2)
	trk := make([]router.Tracker, 2)
	for i := range trk {
		trk[i].Init(out)
		trk[i].Index = int32(i)
		trk[i].Seq, trk[i].Conv, trk[i].ConvID, trk[i].Group = 4, "g9", gid, true
	}
	a.DeliverGroup(gid, []uint64{31, 32}, textFrameOf("to the group"), trk)
	for i := range trk {
		trk[i].Release()
	}
	b.hub.waitDelivery(t, 31, 1).t.Done(true)
	d.hub.waitDelivery(t, 32, 1).t.Done(false)
	want := map[int]int{0: 1, 1: 0}
	for range 2 {
		select {
		case o := <-out:
			if want[o[0]] != o[1] {
				t.Errorf("member %d: written=%d, want %d", o[0], o[1], want[o[0]])
			}
		case <-time.After(waitBound):
			t.Fatal("a member's outcome is missing")
		}
	}
	// A marker a publishes after the message ends what it published:
	// one connection's messages arrive in order. One publish, not one
	// per node with members.
	publishes := func() int {
		t.Helper()
		if err := a.nc.Publish(c.prefix+".g.9", []byte("marker")); err != nil {
			t.Fatal(err)
		}
		for n := 0; ; n++ {
			select {
			case m := <-watch:
				if string(m.Data) == "marker" {
					return n
				}
			case <-time.After(waitBound):
				t.Fatal("the marker did not come")
			}
		}
	}
	if n := publishes(); n != 1 {
		t.Fatalf("%d publishes on the group's subject for one message, want 1", n)
	}
	e.Membership(33, gid, true) // 33 joins on e
	e.subscribed(t, gid, true)
	a.DeliverGroup(gid, []uint64{31, 32, 33}, textFrameOf("second"), nil)
	e.hub.waitDelivery(t, 33, 1)
	if n := publishes(); n != 1 {
		t.Fatalf("%d publishes for the second message, want 1", n)
	}
	if got := len(e.hub.deliveries(33)); got != 1 {
		t.Fatalf("33 got %d pushes, want only the one after its join", got)
	}
	// 33 leaves its last connection on e: e lets the subject go.
	e.hold(33, 0)
	e.subscribed(t, gid, false)
	b.Membership(31, gid, false) // 31 leaves the group
	b.subscribed(t, gid, false)
	d.subscribed(t, gid, true)
}

// textFrameOf is s as one WebSocket text frame, as pushes are (s shorter
// than 126 bytes).
func textFrameOf(s string) []byte {
	return append([]byte{0x81, byte(len(s))}, s...)
}

// A push whose bytes are not one WebSocket text frame reaches no client:
// bytes on the bus go to sockets only in the shape of a push.
func TestSection8_ForeignBytesReachNoClient(t *testing.T) {
	c := newTestCluster(t)
	b := c.join(t, Options{})
	b.hold(7, 1)
	probe := c.connect(t)
	for _, frame := range [][]byte{[]byte("plain text"), {0x82, 1, 'x'}, {0x81, 5, 'x'}, {0x81, 0x81, 0, 0, 0, 0, 'x'}} {
		msg := appendPush(nil, nil, []uint64{7}, frame)
		if err := probe.Publish(c.prefix+".n."+b.Name(), msg); err != nil {
			t.Fatal(err)
		}
	}
	good := textFrameOf("a push")
	if err := probe.Publish(c.prefix+".n."+b.Name(), appendPush(nil, nil, []uint64{7}, good)); err != nil {
		t.Fatal(err)
	}
	d := b.hub.waitDelivery(t, 7, 1)
	if got := b.hub.deliveries(7); len(got) != 1 || string(d.frame) != string(good) {
		t.Fatalf("deliveries to 7: %d, first %q; want only the well-formed push", len(got), d.frame)
	}
}
