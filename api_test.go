package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/gorilla/websocket"

	"github.com/imgate/imgate/storage"
)

// End-to-end tests of the HTTP API's safe defaults, the token lifecycle
// and logout (PROTOCOL §1, §1.1, §1.5) on the real gateway.

// bindTerminal registers id on terminal with a server-generated token and
// returns the token.
func (ts *testServer) bindTerminal(id string, typ int, terminal string) string {
	ts.t.Helper()
	code, body := ts.post("/im/vanke/initUser", fmt.Sprintf(`{"senderId":%q,"type":%d,"terminal":%q}`, id, typ, terminal))
	var r struct {
		Code int
		Data struct{ Token string }
	}
	if code != 200 || json.Unmarshal([]byte(body), &r) != nil || r.Code != 200 || len(r.Data.Token) != 32 {
		ts.t.Fatalf("initUser %s on %s: HTTP %d %s", id, terminal, code, body)
	}
	return r.Data.Token
}

// refused dials with token and checks the 10008 login frame, then CLOSE 1008.
func (ts *testServer) refused(token string) {
	ts.t.Helper()
	c := ts.dial(token)
	c.expect(loginFailed)
	c.expectClose(websocket.ClosePolicyViolation)
}

// alive checks that c still answers a heartbeat.
func (ts *testServer) alive(c *wsClient) {
	ts.t.Helper()
	c.send(`{"cmd":13}`)
	c.expect(heartbeatReply(ts))
}

// PROTOCOL §1.1 (ext): each (user, terminal) keeps its 4 newest tokens;
// binding a fifth revokes the oldest: it no longer logs in, while a
// connection already open with it stays. Every initUser without a token
// used to add one valid for the whole TTL.
func TestSection1_1_FifthTokenRevokesOldest(t *testing.T) {
	ts := newTestServer(t)
	var pc []string
	for range 4 {
		pc = append(pc, ts.bindTerminal("agent_1", 1, "pc"))
	}
	app := ts.bindTerminal("agent_1", 1, "app")
	open := ts.login(pc[0])

	pc = append(pc, ts.bindTerminal("agent_1", 1, "pc"))
	ts.refused(pc[0])
	ts.alive(open)
	for _, tok := range append(pc[1:], app) {
		ts.login(tok)
	}
	// getReceiver registers like initUser: it rotates the same list.
	if code, r := ts.getReceiver(`{"senderId":"agent_1","type":1,"terminal":"pc","receiverId":"agent_1"}`); code != 200 || r.Code != 200 {
		t.Fatalf("getReceiver: %d %+v", code, r)
	}
	ts.refused(pc[1])
	ts.login(pc[2])
}

// PROTOCOL §1.1 (ext): expired tokens are purged; the sweep runs on an
// injected time, and a purged token is refused like an expired one.
func TestSection1_1_ExpiredTokensPurged(t *testing.T) {
	ts := newTestServer(t, func(c *config) { c.TokenTTL = time.Hour })
	old := ts.register("visitor_1", 0)
	ts.clock.Advance(30 * time.Minute)
	fresh := ts.register("visitor_2", 0)
	ts.clock.Advance(31 * time.Minute)
	n, err := ts.s.db.SweepTokens(ts.clock.Now().UnixMilli(), 1000)
	if err != nil || n != 1 {
		t.Fatalf("SweepTokens = %d, %v; want the one expired token", n, err)
	}
	if _, err := ts.s.db.TokenInfo(old, 0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("expired token after the sweep: %v, want ErrNotFound", err)
	}
	ts.refused(old)
	ts.login(fresh)
}

// PROTOCOL §1.1 (ext): a client-chosen token must be 16-128 characters of
// [A-Za-z0-9_.-]; "1" and " " were bound for 7 days.
func TestSection1_1_WeakTokenRefused(t *testing.T) {
	ts := newTestServer(t)
	for _, tok := range []string{"1", " ", "fifteen-chars-x", "abcdefgh+ijklmnop"} {
		code, body := ts.post("/im/vanke/initUser", fmt.Sprintf(`{"senderId":"visitor_1","type":0,"token":%q}`, tok))
		if code != 400 || !strings.Contains(body, `"code":400`) || !strings.Contains(body, "token") {
			t.Fatalf("token %q: HTTP %d %s", tok, code, body)
		}
	}
	if _, err := ts.s.db.UserByID("visitor_1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a refused registration stored the user: %v", err)
	}
	ts.refused("1")
	const good = "visitor-1-token-0001"
	if code, body := ts.post("/im/vanke/initUser", `{"senderId":"visitor_1","type":0,"token":"`+good+`"}`); code != 200 {
		t.Fatalf("a good token: HTTP %d %s", code, body)
	}
	ts.login(good)
}

// PROTOCOL §1.5: logout revokes the user's tokens (of the terminal, when
// given) and closes its connections (of the terminal) with 1008,
// answering how many it closed; an unknown user is code 500.
func TestSection1_5_LogoutClosesConnections(t *testing.T) {
	ts := newTestServer(t)
	pc1, pc2 := ts.bindTerminal("agent_1", 1, "pc"), ts.bindTerminal("agent_1", 1, "pc")
	app := ts.bindTerminal("agent_1", 1, "app")
	other := ts.bindTerminal("agent_2", 1, "pc")
	c1, c2, c3 := ts.login(pc1), ts.login(pc2), ts.login(pc1)
	ca, co := ts.login(app), ts.login(other)

	code, body := ts.post("/im/vanke/logout", `{"senderId":"agent_1","terminal":"pc"}`)
	if code != 200 || body != `{"code":200,"msg":"success","data":{"closed":3}}` {
		t.Fatalf("logout pc: HTTP %d %s", code, body)
	}
	for _, c := range []*wsClient{c1, c2, c3} {
		c.expectClose(websocket.ClosePolicyViolation)
	}
	ts.refused(pc1)
	ts.refused(pc2)
	ts.alive(ca)
	ts.alive(co)
	ca2 := ts.login(app)

	code, body = ts.post("/im/vanke/logout", `{"senderId":"agent_1"}`)
	if code != 200 || body != `{"code":200,"msg":"success","data":{"closed":2}}` {
		t.Fatalf("logout: HTTP %d %s", code, body)
	}
	ca.expectClose(websocket.ClosePolicyViolation)
	ca2.expectClose(websocket.ClosePolicyViolation)
	ts.refused(app)
	ts.alive(co)
	ts.login(other)

	// Logging in again takes a new token.
	ts.login(ts.bindTerminal("agent_1", 1, "pc"))

	code, body = ts.post("/im/vanke/logout", `{"senderId":"nobody"}`)
	if code != 200 || !strings.HasPrefix(body, `{"code":500,`) || !strings.HasSuffix(body, `"data":null}`) {
		t.Fatalf("logout of an unknown user: HTTP %d %s", code, body)
	}
	if code, body = ts.post("/im/vanke/logout", `{"terminal":"pc"}`); code != 400 || !strings.Contains(body, "senderId") {
		t.Fatalf("logout without senderId: HTTP %d %s", code, body)
	}
}

// putV1Token writes a token record as the release before token lists did
// (storage/pebble/doc.go: uid | expireAt, 16 bytes) into a stopped gateway's dir.
func putV1Token(t testing.TB, dir, token string, uid uint64, expire int64) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v := make([]byte, 16)
	binary.BigEndian.PutUint64(v, uid)
	binary.BigEndian.PutUint64(v[8:], uint64(expire))
	if err := db.Set([]byte("t|"+token), v, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// PROTOCOL §1.1, §1.5 on a data directory of the previous release: its
// tokens carry no terminal; they log in until they expire, with the
// profile's terminal, and any logout of their user revokes them.
func TestSection1_5_LogoutRevokesTokensOfThePreviousRelease(t *testing.T) {
	pebbleOnly(t)
	ts := newTestServer(t)
	ts.post("/im/vanke/initUser", `{"senderId":"agent_1","type":1,"terminal":"h5","nick":"Cai"}`)
	u, err := ts.s.db.UserByID("agent_1")
	if err != nil {
		t.Fatal(err)
	}
	ts.stop()
	const legacy = "legacy-token-of-a9f4499"
	putV1Token(t, ts.cfg.DataDir, legacy, u.UID, ts.clock.Now().Add(time.Hour).UnixMilli())
	ts.restart()

	c := ts.dial(legacy)
	c.expectLogin(`{"code":10007,"command":6,"data":{"avatar":"","id":"agent_1","nick":"Cai","sign":"","terminal":"h5","type":1},"msg":"ok 登录成功!"}`)
	// Its connection is on the profile's terminal: a pc logout leaves it,
	// but revokes the token, which has no terminal.
	if code, body := ts.post("/im/vanke/logout", `{"senderId":"agent_1","terminal":"pc"}`); code != 200 || body != `{"code":200,"msg":"success","data":{"closed":0}}` {
		t.Fatalf("logout pc: HTTP %d %s", code, body)
	}
	ts.alive(c)
	ts.refused(legacy)
	if code, body := ts.post("/im/vanke/logout", `{"senderId":"agent_1","terminal":"h5"}`); code != 200 || body != `{"code":200,"msg":"success","data":{"closed":1}}` {
		t.Fatalf("logout h5: HTTP %d %s", code, body)
	}
	c.expectClose(websocket.ClosePolicyViolation)
}

// PROTOCOL §1: a body over the limit answers 413 and the client reads it.
// A 1 MiB initUser body sent with Content-Length by Go's net/http client
// (no Expect) ended in "broken pipe" in 14-18 of 40 attempts.
func TestSection1_OversizedBodyAnswers413(t *testing.T) {
	ts := newTestServer(t)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: waitBound()}
	body := bytes.Repeat([]byte(" "), 1<<20)
	outcomes := map[string]int{}
	for range 40 {
		req, err := http.NewRequest(http.MethodPost, ts.http+"/im/vanke/initUser", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			outcomes[err.Error()]++
			continue
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 413 || !strings.HasPrefix(string(b), `{"code":413,`) {
			outcomes[fmt.Sprintf("%d %s %v", resp.StatusCode, b, err)]++
			continue
		}
		outcomes["413"]++
	}
	if outcomes["413"] != 40 {
		t.Fatalf("%d of 40 read the 413: %v", outcomes["413"], outcomes)
	}
}

// PROTOCOL §1 as amended, on the real gateway: no CORS headers unless
// -allow-origin is set, and POST bodies only as application/json (415
// otherwise): a web page can no longer bind a token of its choice.
func TestSection1_SafeByDefault(t *testing.T) {
	ts := newTestServer(t)
	const page = `{"senderId":"victim","type":1,"token":"token-chosen-by-a-page"}`
	code, body := ts.post("/im/vanke/initUser", page, "Content-Type", "text/plain;charset=UTF-8")
	if code != 415 || body != `{"code":415,"msg":"Content-Type must be application/json","data":null}` {
		t.Fatalf("text/plain: HTTP %d %s", code, body)
	}
	if _, err := ts.s.db.UserByID("victim"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a text/plain body registered the user: %v", err)
	}
	if code, body := ts.post("/im/vanke/initUser", page, "Content-Type", "application/json;charset=UTF-8"); code != 200 {
		t.Fatalf("application/json;charset=UTF-8: HTTP %d %s", code, body)
	}
	for _, method := range []string{http.MethodOptions, http.MethodPost} {
		req, _ := http.NewRequest(method, ts.http+"/im/vanke/initUser", strings.NewReader(`{}`))
		req.Header.Set("Origin", "https://evil.example")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for k := range resp.Header {
			if strings.HasPrefix(strings.ToLower(k), "access-control-") {
				t.Errorf("%s: %s: %q with CORS off", method, k, resp.Header.Get(k))
			}
		}
	}

	ts2 := newTestServer(t, func(c *config) { c.AllowOrigin = "https://crm.example.com" })
	req, _ := http.NewRequest(http.MethodOptions, ts2.http+"/im/vanke/initUser", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://crm.example.com" {
		t.Fatalf("preflight with -allow-origin: %d %v", resp.StatusCode, resp.Header)
	}
}

// PROTOCOL §1: the server refuses to start with a non-loopback HTTP address
// and no API key, unless -insecure-http (IMGATE_INSECURE_HTTP) says it is
// on purpose, which logs a warning.
func TestSection1_NonLoopbackHTTPNeedsKey(t *testing.T) {
	for addr, loopback := range map[string]bool{
		"127.0.0.1:8082":       true,
		"127.0.0.1:0":          true,
		"127.8.9.10:8082":      true,
		"[::1]:8082":           true,
		"localhost:8082":       true,
		"LocalHost:8082":       true,
		"[::ffff:127.0.0.1]:1": true,
		":8082":                false,
		"0.0.0.0:8082":         false,
		"[::]:8082":            false,
		"10.1.2.3:8082":        false,
		"192.168.0.7:8082":     false,
		"imgate.internal:8082": false,
		"localhost.evil:8082":  false,
		"127.0.0.1":            false, // not host:port: refused by listen anyway
	} {
		if got := loopbackAddr(addr); got != loopback {
			t.Errorf("loopbackAddr(%q) = %v, want %v", addr, got, loopback)
		}
	}

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	for _, tc := range []struct {
		name     string
		cfg      config
		refused  bool
		warnings int
	}{
		{"loopback without key", config{HTTPAddr: "127.0.0.1:8082"}, false, 0},
		{"every interface without key", config{HTTPAddr: ":8082"}, true, 0},
		{"0.0.0.0 without key", config{HTTPAddr: "0.0.0.0:8082"}, true, 0},
		{"every interface with key", config{HTTPAddr: ":8082", APIKey: "k"}, false, 0},
		{"every interface, insecure on purpose", config{HTTPAddr: "0.0.0.0:8082", InsecureHTTP: true}, false, 1},
	} {
		logs.Reset()
		err := checkHTTPExposure(tc.cfg, log)
		if (err != nil) != tc.refused {
			t.Errorf("%s: err = %v, want refused %v", tc.name, err, tc.refused)
		}
		if err != nil && !strings.Contains(err.Error(), "-api-key") {
			t.Errorf("%s: error %q does not say what to set", tc.name, err)
		}
		if n := strings.Count(logs.String(), "level=WARN"); n != tc.warnings {
			t.Errorf("%s: %d warnings, want %d: %s", tc.name, n, tc.warnings, logs.String())
		}
	}

	// start refuses before it opens anything.
	dir := t.TempDir()
	if s, err := start(config{HTTPAddr: "0.0.0.0:0", WSAddr: "127.0.0.1:0", DataDir: dir}, log); err == nil {
		s.stop(t.Context())
		t.Fatal("start served a keyless API on every interface")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a refused start wrote %d entries into the data dir", len(ents))
	}

	// The binary exits non-zero, naming the fix; with -insecure-http the
	// gateway starts (parseFlags reads it from IMGATE_INSECURE_HTTP too:
	// TestFlags_EnvironmentFallback).
	cmd := exec.Command(imgateBinary(t), "-http-addr", "0.0.0.0:0", "-ws-addr", "127.0.0.1:0", "-data", t.TempDir())
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "-insecure-http") {
		t.Fatalf("keyless 0.0.0.0: err %v, output:\n%s", err, out)
	}
	ts := newTestServer(t, func(c *config) { c.HTTPAddr, c.InsecureHTTP = "0.0.0.0:0", true })
	if code, body := httpGet(t, strings.Replace(ts.http, "0.0.0.0", "127.0.0.1", 1)+"/healthz"); code != 200 {
		t.Fatalf("insecure on purpose: healthz %d %s", code, body)
	}
}
