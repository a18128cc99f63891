package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/imgate/imgate/engine"
)

// waitBound bounds every wait in the end-to-end tests; it grows under the
// race detector, which slows everything several times.
func waitBound() time.Duration {
	if raceEnabled {
		return 20 * time.Second
	}
	return 5 * time.Second
}

// clock is an injectable clock: fixed until advanced.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)} }

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

// testServer is a real gateway on loopback ports with a real Pebble
// directory under t.TempDir().
type testServer struct {
	t     testing.TB
	cfg   config
	s     *server
	clock *clock
	ws    string // host:port of the WebSocket listener
	http  string // base URL of the HTTP API
	// A cluster (IMGATE_TEST_STORE=cluster, or newTestCluster): the other
	// nodes, and the addresses of all; dial, rawDial and post go to the
	// next node each time (round robin), unless the view is pinned.
	others  []*server
	wsAll   []string
	httpAll []string
	rr      *atomic.Uint64
	pinned  bool
	// perNode, if set, gives node i its own config.
	perNode func(i int, c config) config
}

// newTestServer starts a gateway; mod may change the config first.
func newTestServer(t testing.TB, mod ...func(*config)) *testServer {
	t.Helper()
	ck := newClock()
	cfg := config{
		WSAddr:         "127.0.0.1:0",
		HTTPAddr:       "127.0.0.1:0",
		DataDir:        t.TempDir(),
		IdleTimeout:    90 * time.Second,
		PingInterval:   30 * time.Second,
		MaxMessageSize: 64 << 10,
		MaxPending:     4 << 20,
		TokenTTL:       168 * time.Hour,
		Metrics:        true,
		Now:            ck.Now,
	}
	for _, m := range mod {
		m(&cfg)
	}
	if cfg.Store == "" {
		cfg.Store = storeFor(t, cfg.DataDir)
	}
	nodes := 1
	if onCluster() && cfg.NATS == "" {
		nodes = testClusterNodes
		cfg.NATS, cfg.NATSPrefix = sharedNATS(t), clusterPrefix()
	}
	return startTestServer(t, cfg, ck, nodes)
}

// startTestServer starts nodes gateways of cfg (nodes > 1: a cluster on
// cfg.NATS and cfg.Store).
func startTestServer(t testing.TB, cfg config, ck *clock, nodes int, perNode ...func(int, config) config) *testServer {
	t.Helper()
	ts := &testServer{t: t, cfg: cfg, clock: ck, rr: new(atomic.Uint64)}
	if len(perNode) > 0 {
		ts.perNode = perNode[0]
	}
	ts.others = make([]*server, nodes-1)
	ts.start()
	t.Cleanup(ts.stop)
	return ts
}

// testLogger returns the gateway's logger for t: debug lines go to stderr
// with IMGATE_TEST_LOG set; otherwise they are kept and the last of them
// printed only if the test fails, so a failure in CI explains itself.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("IMGATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	buf := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			b := buf.String()
			if len(b) > 20000 {
				b = "…" + b[len(b)-20000:]
			}
			t.Logf("gateway log:\n%s", b)
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 4<<20 { // keep the tail only
		tail := append([]byte(nil), l.b.Bytes()[l.b.Len()-1<<20:]...)
		l.b.Reset()
		l.b.Write(tail)
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (ts *testServer) start() {
	ts.t.Helper()
	ts.wsAll, ts.httpAll = ts.wsAll[:0], ts.httpAll[:0]
	for i := 0; i <= len(ts.others); i++ {
		cfg := ts.cfg
		if ts.perNode != nil {
			cfg = ts.perNode(i, cfg)
		}
		s, err := start(cfg, testLogger(ts.t))
		if err != nil {
			ts.t.Fatalf("start: %v", err)
		}
		if i == 0 {
			ts.s = s
		} else {
			ts.others[i-1] = s
		}
		ts.wsAll = append(ts.wsAll, s.engine.Addr().String())
		ts.httpAll = append(ts.httpAll, "http://"+s.httpLn.Addr().String())
	}
	ts.ws, ts.http = ts.wsAll[0], ts.httpAll[0]
}

func (ts *testServer) stop() {
	if ts.pinned {
		return
	}
	// Every node at once, as a cluster's nodes stop: each has the whole
	// bound.
	var wg sync.WaitGroup
	stop := func(s *server, name string) {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), waitBound())
		defer cancel()
		if err := s.stop(ctx); err != nil {
			ts.t.Errorf("stop%s: %v", name, err)
		}
	}
	for i, s := range ts.others {
		if s != nil {
			wg.Add(1)
			go stop(s, fmt.Sprintf(" node %d", i+1))
			ts.others[i] = nil
		}
	}
	if ts.s != nil {
		wg.Add(1)
		go stop(ts.s, "")
		ts.s = nil
	}
	wg.Wait()
}

// nextWS and nextHTTP are the node the next connection or HTTP call goes
// to: the next one round robin in a cluster.
func (ts *testServer) nextWS() string {
	if ts.pinned || len(ts.wsAll) < 2 {
		return ts.ws
	}
	return ts.wsAll[ts.rr.Add(1)%uint64(len(ts.wsAll))]
}

func (ts *testServer) nextHTTP() string {
	if ts.pinned || len(ts.httpAll) < 2 {
		return ts.http
	}
	return ts.httpAll[ts.rr.Add(1)%uint64(len(ts.httpAll))]
}

// node returns a view of node i of a cluster: its connections and calls
// go to that node only. Stopping it is the whole cluster's business.
func (ts *testServer) node(i int) *testServer {
	v := *ts
	v.pinned = true
	v.ws, v.http = ts.wsAll[i], ts.httpAll[i]
	if i > 0 {
		v.s = ts.others[i-1]
	}
	return &v
}

// restart stops the gateway and starts it again on the same data dir.
func (ts *testServer) restart() {
	ts.t.Helper()
	ts.stop()
	ts.cfg.WSAddr, ts.cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	ts.start()
}

// post sends a JSON body to the HTTP API and returns status and body.
func (ts *testServer) post(path, body string, header ...string) (int, string) {
	ts.t.Helper()
	req, err := http.NewRequest(http.MethodPost, ts.nextHTTP()+path, strings.NewReader(body))
	if err != nil {
		ts.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ts.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// register creates user id of type typ with a server-generated token and
// returns the token.
func (ts *testServer) register(id string, typ int) string {
	ts.t.Helper()
	code, body := ts.post("/im/vanke/initUser", fmt.Sprintf(`{"senderId":%q,"type":%d,"token":""}`, id, typ))
	var r struct {
		Code int
		Data struct{ Token string }
	}
	if code != 200 || json.Unmarshal([]byte(body), &r) != nil || r.Code != 200 || len(r.Data.Token) != 32 {
		ts.t.Fatalf("initUser %s: HTTP %d %s", id, code, body)
	}
	return r.Data.Token
}

// wsClient is an independent WebSocket client (gorilla/websocket).
type wsClient struct {
	t testing.TB
	c *websocket.Conn
}

// dial connects with token and returns the client with the login frame
// not yet read.
func (ts *testServer) dial(token string) *wsClient {
	ts.t.Helper()
	d := websocket.Dialer{HandshakeTimeout: waitBound()}
	c, resp, err := d.Dial("ws://"+ts.nextWS()+"/?token="+token, nil)
	if err != nil {
		ts.t.Fatalf("dial: %v", err)
	}
	resp.Body.Close()
	ts.t.Cleanup(func() { c.Close() })
	return &wsClient{t: ts.t, c: c}
}

// login dials with token and checks the login frame is 10007.
func (ts *testServer) login(token string) *wsClient {
	ts.t.Helper()
	c := ts.dial(token)
	if got := c.read(); !strings.HasPrefix(got, `{"code":10007,"command":6,`) {
		ts.t.Fatalf("login frame = %s", got)
	}
	return c
}

func (c *wsClient) send(s string) {
	c.t.Helper()
	if err := c.c.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatalf("send %s: %v", s, err)
	}
}

// read returns the next text message, failing the test on anything else.
func (c *wsClient) read() string {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(waitBound()))
	typ, b, err := c.c.ReadMessage()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	if typ != websocket.TextMessage {
		c.t.Fatalf("read: message type %d", typ)
	}
	return string(b)
}

// expect reads the next message and compares it byte for byte.
func (c *wsClient) expect(want string) {
	c.t.Helper()
	if got := c.read(); got != want {
		c.t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// expectClose reads until the server's CLOSE and checks its status code.
func (c *wsClient) expectClose(code int) {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(waitBound()))
	for {
		_, b, err := c.c.ReadMessage()
		if err == nil {
			c.t.Fatalf("expected close %d, got message %s", code, b)
		}
		ce, ok := err.(*websocket.CloseError)
		if !ok {
			c.t.Fatalf("expected close %d, got %v", code, err)
		}
		if ce.Code != code {
			c.t.Fatalf("close code = %d (%s), want %d", ce.Code, ce.Text, code)
		}
		return
	}
}

// rawConn is a WebSocket client written byte by byte over TCP, to send
// what a well-behaved library never would.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

const upgradeRequest = "GET /?token=%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"

// rawDial opens a TCP connection without upgrading.
func (ts *testServer) rawDial() *rawConn {
	ts.t.Helper()
	nc, err := net.DialTimeout("tcp", ts.nextWS(), waitBound())
	if err != nil {
		ts.t.Fatalf("dial: %v", err)
	}
	ts.t.Cleanup(func() { nc.Close() })
	return &rawConn{t: ts.t, nc: nc, br: bufio.NewReader(nc)}
}

// rawLogin upgrades a raw connection with token and reads the 101 and the
// login frame.
func (ts *testServer) rawLogin(token string) *rawConn {
	ts.t.Helper()
	rc := ts.rawDial()
	rc.write([]byte(fmt.Sprintf(upgradeRequest, token, ts.ws)))
	if status := rc.readResponse(); !strings.HasPrefix(status, "HTTP/1.1 101") {
		ts.t.Fatalf("upgrade: %s", status)
	}
	if op, p := rc.readFrame(); op != 1 || !bytes.HasPrefix(p, []byte(`{"code":10007`)) {
		ts.t.Fatalf("login frame: op %d %s", op, p)
	}
	return rc
}

func (rc *rawConn) write(b []byte) {
	rc.t.Helper()
	if _, err := rc.nc.Write(b); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
}

// readResponse reads an HTTP response head and returns its status line.
func (rc *rawConn) readResponse() string {
	rc.t.Helper()
	_ = rc.nc.SetReadDeadline(time.Now().Add(waitBound()))
	status, err := rc.br.ReadString('\n')
	if err != nil {
		rc.t.Fatalf("read status: %v", err)
	}
	for {
		line, err := rc.br.ReadString('\n')
		if err != nil {
			rc.t.Fatalf("read header: %v", err)
		}
		if line == "\r\n" {
			return strings.TrimSpace(status)
		}
	}
}

// readFrame reads one server frame, checking it is unmasked and final.
func (rc *rawConn) readFrame() (op byte, payload []byte) {
	rc.t.Helper()
	_ = rc.nc.SetReadDeadline(time.Now().Add(waitBound()))
	var h [2]byte
	if _, err := io.ReadFull(rc.br, h[:]); err != nil {
		rc.t.Fatalf("read frame: %v", err)
	}
	if h[0]&0x80 == 0 || h[1]&0x80 != 0 {
		rc.t.Fatalf("server frame not final or masked: % x", h)
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		_, _ = io.ReadFull(rc.br, ext[:])
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		_, _ = io.ReadFull(rc.br, ext[:])
		n = binary.BigEndian.Uint64(ext[:])
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(rc.br, payload); err != nil {
		rc.t.Fatalf("read payload: %v", err)
	}
	return h[0] & 0x0f, payload
}

// expectClose reads frames until a CLOSE and checks its code, then checks
// the server ends the TCP connection.
func (rc *rawConn) expectClose(code uint16) {
	rc.t.Helper()
	for {
		op, p := rc.readFrame()
		if op != 8 {
			continue
		}
		if len(p) < 2 || binary.BigEndian.Uint16(p) != code {
			rc.t.Fatalf("close payload % x, want code %d", p, code)
		}
		rc.expectEOF()
		return
	}
}

// expectEOF checks the server closed (at least its side of) the socket.
func (rc *rawConn) expectEOF() {
	rc.t.Helper()
	_ = rc.nc.SetReadDeadline(time.Now().Add(waitBound()))
	b, err := rc.br.ReadByte()
	if err == nil {
		rc.t.Fatalf("expected EOF, got byte %#x", b)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		rc.t.Fatalf("socket still open after %v", waitBound())
	}
}

// frame builds one client frame: masked unless unmasked is set.
func frame(op byte, fin bool, payload []byte, unmasked bool) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	var out []byte
	maskBit := byte(0x80)
	if unmasked {
		maskBit = 0
	}
	switch n := len(payload); {
	case n <= 125:
		out = append(out, b0, maskBit|byte(n))
	case n <= 0xffff:
		out = append(out, b0, maskBit|126, byte(n>>8), byte(n))
	default:
		out = append(out, b0, maskBit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if unmasked {
		return append(out, payload...)
	}
	var key [4]byte
	_, _ = rand.Read(key[:])
	out = append(out, key[:]...)
	for i, c := range payload {
		out = append(out, c^key[i%4])
	}
	return out
}

func text(s string) []byte { return frame(1, true, []byte(s), false) }

// epochRE matches the login data's epoch (PROTOCOL §7.7).
var epochRE = regexp.MustCompile(`"epoch":"[0-9a-f]{32}",`)

// expectLogin reads the login reply and compares it with want, which has
// no epoch: the reply must carry one, 32 hex characters.
func (c *wsClient) expectLogin(want string) {
	c.t.Helper()
	got := c.read()
	if !epochRE.MatchString(got) {
		c.t.Fatalf("login reply without an epoch: %s", got)
	}
	if got = epochRE.ReplaceAllString(got, ""); got != want {
		c.t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// servers returns the gateways of ts: one, or a cluster's nodes.
func (ts *testServer) servers() []*server {
	if ts.pinned {
		return []*server{ts.s}
	}
	return append([]*server{ts.s}, ts.others...)
}

// online reports whether any node counts uid online: in a cluster, by
// its cluster-wide view (PROTOCOL §8), so "not online" means no node will
// push to uid or ack 10000 for it.
func (ts *testServer) online(uid uint64) bool {
	for _, s := range ts.servers() {
		if s.node != nil && s.node.Online(uid) || s.engine.Online(uid) {
			return true
		}
	}
	return false
}

// stats sums the engine figures of every node.
func (ts *testServer) stats() engine.Stats {
	var st engine.Stats
	for _, s := range ts.servers() {
		x := s.engine.Stats()
		st.Conns += x.Conns
		st.Users += x.Users
		st.SlowConsumers += x.SlowConsumers
		st.Unsent += x.Unsent
	}
	return st
}

// undelivered sums the pushes no connection wrote, over every node.
func (ts *testServer) undelivered() uint64 {
	var n uint64
	for _, s := range ts.servers() {
		n += s.router.Undelivered()
	}
	return n
}

// settled reports whether every push sent across nodes is settled and
// its settling committed: no node awaits another's word, and no queue row
// is pending. On one node it is always true: a push settles when its
// connections are done, in the order of the one committer.
func (ts *testServer) settled() bool {
	if len(ts.others) == 0 {
		return true
	}
	for _, s := range ts.servers() {
		if s.node != nil && s.node.Stats().Awaiting > 0 {
			return false
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitBound())
	defer cancel()
	conn, err := pgx.Connect(ctx, ts.cfg.Store)
	if err != nil {
		ts.t.Fatalf("settled: %v", err)
	}
	defer conn.Close(ctx)
	var pending bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM queue WHERE pending)`).Scan(&pending); err != nil {
		ts.t.Fatalf("settled: %v", err)
	}
	return !pending
}
