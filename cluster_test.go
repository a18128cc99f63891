package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/imgate/imgate/internal/pgtest"
)

// testClusterNodes is the size of the clusters of IMGATE_TEST_STORE=cluster.
const testClusterNodes = 3

// natsCluster is a NATS cluster of in-process servers on fixed loopback
// ports, so that a server stopped can start again where it was.
type natsCluster struct {
	t    testing.TB
	opts []*natsserver.Options
	mu   sync.Mutex
	srv  []*natsserver.Server
}

// freePorts returns n loopback TCP ports free at the time of the call.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	lns := make([]net.Listener, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i], ports[i] = ln, ln.Addr().(*net.TCPAddr).Port
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// startNATS starts a cluster of n NATS servers routed to each other and
// waits until every route is up.
func startNATS(t testing.TB, n int) *natsCluster {
	t.Helper()
	ports := freePorts(t, 2*n)
	nc := &natsCluster{t: t, srv: make([]*natsserver.Server, n)}
	for i := 0; i < n; i++ {
		o := &natsserver.Options{
			ServerName: fmt.Sprintf("nats-%d", i),
			Host:       "127.0.0.1",
			Port:       ports[i],
			NoLog:      true,
			NoSigs:     true,
			Cluster: natsserver.ClusterOpts{
				Name: "imgate-test",
				Host: "127.0.0.1",
				Port: ports[n+i],
			},
		}
		for j := 0; j < n; j++ {
			if j != i {
				o.Routes = append(o.Routes, natsserver.RoutesFromStr(fmt.Sprintf("nats-route://127.0.0.1:%d", ports[n+j]))...)
			}
		}
		nc.opts = append(nc.opts, o)
	}
	for i := range nc.srv {
		nc.start(i)
	}
	nc.waitRoutes()
	t.Cleanup(nc.stopAll)
	return nc
}

func (nc *natsCluster) start(i int) {
	nc.t.Helper()
	s, err := natsserver.NewServer(nc.opts[i])
	if err != nil {
		nc.t.Fatalf("nats %d: %v", i, err)
	}
	s.Start()
	if !s.ReadyForConnections(waitBound()) {
		nc.t.Fatalf("nats %d not ready", i)
	}
	nc.mu.Lock()
	nc.srv[i] = s
	nc.mu.Unlock()
}

// waitRoutes waits until every running server routes to every other.
func (nc *natsCluster) waitRoutes() {
	nc.t.Helper()
	waitFor(nc.t, "nats routes", func() bool {
		nc.mu.Lock()
		defer nc.mu.Unlock()
		up := 0
		for _, s := range nc.srv {
			if s != nil {
				up++
			}
		}
		for _, s := range nc.srv {
			if s != nil && s.NumRoutes() < up-1 {
				return false
			}
		}
		return true
	})
}

func (nc *natsCluster) stop(i int) {
	nc.mu.Lock()
	s := nc.srv[i]
	nc.srv[i] = nil
	nc.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

func (nc *natsCluster) stopAll() {
	for i := range nc.srv {
		nc.stop(i)
	}
}

// urls is every server's client URL, for -nats.
func (nc *natsCluster) urls() string {
	var u []string
	for _, o := range nc.opts {
		u = append(u, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return strings.Join(u, ",")
}

// url is server i's client URL alone.
func (nc *natsCluster) url(i int) string { return fmt.Sprintf("nats://127.0.0.1:%d", nc.opts[i].Port) }

var shared struct {
	once sync.Once
	url  string
	err  error
}

// sharedNATS is one in-process NATS server for the clusters of a
// IMGATE_TEST_STORE=cluster run; each test's cluster has its own subject
// prefix (clusterPrefix), so they never hear each other.
func sharedNATS(t testing.TB) string {
	t.Helper()
	shared.once.Do(func() {
		s, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
		if err != nil {
			shared.err = err
			return
		}
		s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			shared.err = fmt.Errorf("shared nats not ready")
			return
		}
		shared.url = s.ClientURL()
	})
	if shared.err != nil {
		t.Fatalf("nats: %v", shared.err)
	}
	return shared.url
}

func clusterPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:])
}

// newTestCluster starts three gateways on one throwaway PostgreSQL
// database and nc, sharing one clock. mod may change the config first.
func newTestCluster(t *testing.T, nc *natsCluster, mod ...func(*config)) *testServer {
	return newTestClusterEach(t, nc, nil, mod...)
}

// newTestClusterEach is newTestCluster with perNode giving each node its
// own config (nil: the same).
func newTestClusterEach(t *testing.T, nc *natsCluster, perNode func(int, config) config, mod ...func(*config)) *testServer {
	t.Helper()
	ck := newClock()
	cfg := config{
		WSAddr:         "127.0.0.1:0",
		HTTPAddr:       "127.0.0.1:0",
		DataDir:        t.TempDir(),
		Store:          pgtest.Database(t),
		NATS:           nc.urls(),
		NATSPrefix:     clusterPrefix(),
		IdleTimeout:    90 * time.Second,
		PingInterval:   30 * time.Second,
		MaxMessageSize: 64 << 10,
		MaxPending:     4 << 20,
		TokenTTL:       168 * time.Hour,
		Now:            ck.Now,
	}
	for _, m := range mod {
		m(&cfg)
	}
	var each []func(int, config) config
	if perNode != nil {
		each = append(each, perNode)
	}
	ts := startTestServer(t, cfg, ck, 3, each...)
	// Every node knows the two others before the test starts.
	waitFor(t, "nodes to meet", func() bool {
		for _, s := range append([]*server{ts.s}, ts.others...) {
			if s.node.Stats().Nodes != 2 {
				return false
			}
		}
		return true
	})
	return ts
}

// PROTOCOL §8: three gateways behind one address behave as one server.
// Visitor on node 0, the agent on nodes 1 and 2, a third user on node 0.
func TestSection8_ThreeNodesActAsOne(t *testing.T) {
	nc := startNATS(t, 3)
	ts := newTestCluster(t, nc)
	n0, n1, n2 := ts.node(0), ts.node(1), ts.node(2)

	// §1.2: getReceiver on node 2 assigns the agent online on nodes 1 and 2.
	tokA := n1.register("agent_a", 1)
	a1 := n1.login(tokA)
	a2 := n2.login(tokA)
	code, r := n2.getReceiver(`{"senderId":"visitor_v","type":0,"token":"visitor-token-0000001"}`)
	if code != 200 || r.Code != 200 || r.Data == nil || r.Data.ID != "agent_a" || r.Data.Status != "online" {
		t.Fatalf("getReceiver: HTTP %d %+v", code, r)
	}
	v := n0.login("visitor-token-0000001")

	// §4.2 across nodes: acked 10000 (online on other nodes), pushed to
	// both of the agent's terminals.
	v.send(`{"cmd":11,"to":"agent_a","chatType":2,"msgType":0,"content":"hello from node 0"}`)
	if ack := v.readUntil(`"command":12`); !strings.Contains(ack, `"code":10000`) {
		t.Fatalf("ack = %s, want 10000: the agent is online on nodes 1 and 2", ack)
	}
	for _, a := range []*wsClient{a1, a2} {
		if p := a.readUntil(`"command":11`); !strings.Contains(p, "hello from node 0") {
			t.Fatalf("push = %s", p)
		}
	}
	// And back: the agent on node 1 answers; the visitor on node 0 gets
	// it, the agent's other terminal on node 2 gets its copy.
	a1.send(`{"cmd":11,"to":"visitor_v","chatType":2,"msgType":0,"content":"hi from node 1"}`)
	if ack := a1.readUntil(`"command":12`); !strings.Contains(ack, `"code":10000`) {
		t.Fatalf("ack = %s, want 10000", ack)
	}
	if p := v.readUntil(`"command":11`); !strings.Contains(p, "hi from node 1") {
		t.Fatalf("push = %s", p)
	}
	if p := a2.readUntil(`"command":11`); !strings.Contains(p, "hi from node 1") {
		t.Fatalf("copy to the other terminal = %s", p)
	}

	// §7.6 typing and §7.5 read receipts cross nodes.
	v.send(`{"cmd":33,"to":"agent_a","state":1}`)
	if e := a2.readUntil(`"command":34`); !strings.Contains(e, `"from":"visitor_v"`) {
		t.Fatalf("typing = %s", e)
	}
	a1.readUntil(`"command":34`)
	a2.send(`{"cmd":27,"peer":"visitor_v","seq":1}`)
	a2.readUntil(`"code":10030`)
	if e := v.readUntil(`"command":28`); !strings.Contains(e, `"from":"agent_a"`) {
		t.Fatalf("read receipt = %s", e)
	}

	// §4.2 offline decided cluster-wide: the visitor leaves node 0; a
	// message from node 2 is acked 10001 and queued; §4.4 any node pulls it.
	v.c.Close()
	uv := uidOf(t, ts, "visitor_v")
	waitFor(t, "visitor offline on every node", func() bool { return offlineEverywhere(ts, uv) })
	a2.send(`{"cmd":11,"to":"visitor_v","chatType":2,"msgType":0,"content":"are you there?"}`)
	if ack := a2.readUntil(`"command":12`); !strings.Contains(ack, `"code":10001`) {
		t.Fatalf("ack = %s, want 10001: the visitor is on no node", ack)
	}
	v = n1.login("visitor-token-0000001")
	v.send(`{"cmd":19,"type":0,"userId":"visitor_v","fromUserId":"agent_a"}`)
	if got := v.readUntil(`"command":20`); !strings.Contains(got, "are you there?") {
		t.Fatalf("offline pull on node 1 = %s", got)
	}
	v2 := n2.login("visitor-token-0000001")
	v2.send(`{"cmd":19,"type":1,"userId":"visitor_v","fromUserId":"agent_a","count":10}`)
	if got := v2.readUntil(`"command":20`); !strings.Contains(got, "hello from node 0") || !strings.Contains(got, "are you there?") {
		t.Fatalf("history on node 2 = %s", got)
	}

	// §4.5 recall reaches both sides on their nodes.
	a1.send(`{"cmd":11,"to":"visitor_v","chatType":2,"msgType":0,"content":"oops"}`)
	ack := a1.readUntil(`"command":12`)
	id := between(ack, `"id":"`, `"`)
	v.readUntil("oops")
	a1.send(`{"cmd":15,"id":"` + id + `"}`)
	a1.readUntil(`"code":10025`)
	for _, c := range []*wsClient{v, v2, a2} {
		if e := c.readUntil(`"command":16`); !strings.Contains(e, id) {
			t.Fatalf("recall notice = %s", e)
		}
	}

	// §5 a group with members on all three nodes: one message reaches
	// every member's node; join notices cross nodes.
	tokC := n0.register("consultant_c", 2)
	c0 := n0.login(tokC)
	for _, m := range []*wsClient{c0, a1, v} {
		m.send(`{"cmd":7,"groupId":"g_three"}`)
		m.readUntil(`"code":10011`)
	}
	if e := c0.readUntil(`"command":9`); !strings.Contains(e, `"id":"agent_a"`) {
		t.Fatalf("join notice on node 0 = %s", e)
	}
	v.send(`{"cmd":11,"groupId":"g_three","chatType":1,"msgType":0,"content":"to the group"}`)
	v.readUntil(`"code":10000`)
	for _, c := range []*wsClient{c0, a1, a2, v2} {
		if p := c.readUntil(`"command":11`); !strings.Contains(p, "to the group") {
			t.Fatalf("group push = %s", p)
		}
	}

	// §3 cmd 14 with the caller's id closes every connection of the
	// caller, on every node.
	a2.send(`{"cmd":14,"userid":"agent_a"}`)
	a2.readUntil(`"code":10021`)
	a2.expectClose(1000)
	a1.expectClose(1000)
}

// offlineEverywhere reports whether no node counts uid online.
func offlineEverywhere(ts *testServer, uid uint64) bool {
	for _, s := range append([]*server{ts.s}, ts.others...) {
		if s.node.Online(uid) {
			return false
		}
	}
	return true
}

// between returns the text of s between the first from and the next to.
func between(s, from, to string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return ""
	}
	s = s[i+len(from):]
	if j := strings.Index(s, to); j >= 0 {
		return s[:j]
	}
	return s
}

// PROTOCOL §8: -max-conns-per-user counts a user's connections on every
// node; the one past it is refused with 10008 and close 1008 whichever
// node it reaches.
func TestSection8_MaxConnsPerUserIsClusterWide(t *testing.T) {
	nc := startNATS(t, 3)
	ts := newTestCluster(t, nc, func(c *config) { c.MaxConnsUser = 2 })
	tok := ts.node(0).register("agent_a", 1)
	ts.node(0).login(tok)
	ts.node(1).login(tok)
	c := ts.node(2).dial(tok)
	if got := c.read(); !strings.HasPrefix(got, `{"code":10008,`) {
		t.Fatalf("third connection on a third node: %s, want 10008", got)
	}
	c.expectClose(1008)
}

// -nats needs a store every node shares: Pebble is refused with a clear
// error, and -nats embedded runs a one-node cluster on PostgreSQL.
func TestFlags_NATS(t *testing.T) {
	cfg := config{WSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), NATS: "embedded"}
	if _, err := start(cfg, testLogger(t)); err == nil || !strings.Contains(err.Error(), "-nats needs a shared store") {
		t.Fatalf("-nats on Pebble: %v", err)
	}
	ts := newTestServer(t, func(c *config) {
		c.Store, c.NATS = pgtest.Database(t), "embedded"
	})
	if ts.s.node == nil || !ts.s.node.Stats().Connected {
		t.Fatal("-nats embedded: not a connected cluster node")
	}
	a := ts.login(ts.register("agent_a", 1))
	v := ts.login(ts.register("visitor_v", 0))
	v.send(`{"cmd":11,"to":"agent_a","chatType":2,"content":"hello"}`)
	if ack := v.readUntil(`"command":12`); !strings.Contains(ack, `"code":10000`) {
		t.Fatalf("ack = %s", ack)
	}
	a.readUntil("hello")
}

// PROTOCOL §8: a connection is online cluster-wide before its 10007
// login frame is sent: a message sent from another node as soon as the
// login frame was read is acked 10000 and pushed to it.
func TestSection8_OnlineEverywhereBeforeLoginReply(t *testing.T) {
	nc := startNATS(t, 3)
	ts := newTestCluster(t, nc)
	v := ts.node(0).login(ts.node(0).register("visitor_v", 0))
	for i := 0; i < 20; i++ {
		agent := fmt.Sprintf("agent_%d", i)
		a := ts.node(1 + i%2).login(ts.node(0).register(agent, 1))
		v.send(fmt.Sprintf(`{"cmd":11,"to":%q,"chatType":2,"content":"right after your login %d"}`, agent, i))
		if ack := v.readUntil(`"command":12`); !strings.Contains(ack, `"code":10000`) {
			t.Fatalf("login %d: ack %s, want 10000: the login frame went out before the other nodes knew", i, ack)
		}
		a.readUntil(fmt.Sprintf("right after your login %d", i))
	}
}

// Two clusters on one NATS with one prefix but different databases never
// hear each other: the subjects carry the store's epoch (PROTOCOL §7.7).
// A prefix with wildcards is refused, and so is a -max-message-size the
// NATS servers cannot carry.
func TestSection8_ClustersOnOneBusStayApart(t *testing.T) {
	nc := startNATS(t, 1)
	one := newTestCluster(t, nc, func(c *config) { c.NATSPrefix = "shared" })
	cfg := one.cfg
	cfg.Store = pgtest.Database(t)
	other := startTestServer(t, cfg, newClock(), 1)
	waitFor(t, "the other cluster's node up", func() bool { return other.s.node.Stats().Connected })
	for _, s := range one.servers() {
		if n := s.node.Stats().Nodes; n != 2 {
			t.Fatalf("a node of the first cluster counts %d others, want its 2", n)
		}
	}
	// Same uids on both databases: a message to a user offline in the
	// other cluster is not pushed to this cluster's user of that uid.
	a := one.node(0).login(one.node(0).register("agent_a", 1))
	ov := other.login(other.register("visitor_x", 0))
	other.register("agent_y", 1)
	ov.send(`{"cmd":11,"to":"agent_y","chatType":2,"content":"for agent_y only"}`)
	if ack := ov.readUntil(`"command":12`); !strings.Contains(ack, `"code":10001`) {
		t.Fatalf("ack = %s, want 10001: agent_y is on no node of its cluster", ack)
	}
	a.send(`{"cmd":13}`)
	if got := a.readUntil(`"command":13`); strings.Contains(got, "for agent_y only") {
		t.Fatal("a user of another cluster got the message")
	}
	if other.s.node.Stats().Nodes != 0 {
		t.Fatalf("the other cluster's node counts %d nodes, want 0", other.s.node.Stats().Nodes)
	}

	for _, bad := range []string{"*", "imgate.>", "a..b", "x y"} {
		c := cfg
		c.NATSPrefix = bad
		if _, err := start(c, testLogger(t)); err == nil || !strings.Contains(err.Error(), "-nats-prefix") {
			t.Errorf("-nats-prefix %q: %v, want a refusal", bad, err)
		}
	}
	c := cfg
	c.MaxMessageSize = 2 << 20
	if _, err := start(c, testLogger(t)); err == nil || !strings.Contains(err.Error(), "max_payload") {
		t.Errorf("-max-message-size 2 MiB over NATS's 1 MiB: %v, want a refusal", err)
	}
}
