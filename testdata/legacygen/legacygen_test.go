//go:build legacyfixture

// Package legacygen writes testdata/data-<release>.tar.gz: the data
// directory of a gateway of an old release, filled through its real HTTP
// API and WebSocket, and testdata/data-<release>.json, what was written and
// what the old server answered. It drives an already built binary of that
// release:
//
//	git worktree add /tmp/imgate-8a27658 8a27658
//	(cd /tmp/imgate-8a27658 && go build -o /tmp/imgate-old .)
//	git worktree remove /tmp/imgate-8a27658
//	IMGATE_OLD_BIN=/tmp/imgate-old IMGATE_OLD_RELEASE=8a27658 go test -tags legacyfixture -count=1 -v ./testdata/legacygen
//
// IMGATE_OLD_RELEASE is the release's short commit (default a9f4499): it
// names the files, the manifest's release, and prefixes the message ids the
// client chooses (so it must be hex). The same scenario runs against a9f4499
// and 8a27658; what the servers count differently is recorded as each
// answered. IMGATE_FIXTURE_OUT names another directory to write to (a dry
// run).
//
// See testdata/README.md for what the fixture holds. It is not part of the
// normal test run (the build tag, and the testdata directory is skipped by
// ./...).
package legacygen

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

const bound = 10 * time.Second

// Manifest is testdata/data-<release>.json.
type Manifest struct {
	Release     string                    `json:"release"`
	GeneratedAt int64                     `json:"generatedAt"` // ms, just before the old server was stopped
	Users       []User                    `json:"users"`
	Messages    []Message                 `json:"messages"` // in the order they were sent
	Group       string                    `json:"group"`
	Members     []string                  `json:"members"`
	Offline     map[string]Queues         `json:"offline"` // user id → its offline queues (message ids)
	ChatInfo    []ChatInfo                `json:"chatInfo"`
	Unread      map[string]map[string]int `json:"unread"` // owner → peer → cmd 17 unReadNum
	ChatList    map[string]ChatList       `json:"chatList"`
}

type User struct {
	ID       string   `json:"id"`
	Type     int      `json:"type"`
	Nick     string   `json:"nick"`
	Terminal string   `json:"terminal"`
	Tokens   []string `json:"tokens"`
	// Generated tells, per token, whether the server generated it.
	Generated []bool `json:"generated"`
}

type Message struct {
	ID         string `json:"id"`
	From       string `json:"from"`
	To         string `json:"to,omitempty"`
	Group      string `json:"groupId,omitempty"`
	Content    string `json:"content"`
	Seq        int    `json:"seq"`
	CreateTime int64  `json:"createTime"`
	Ack        int    `json:"ack"`                // 10000 or 10001
	ClientID   bool   `json:"clientId"`           // the client chose the id
	Recalled   bool   `json:"recalled,omitempty"` // recalled afterwards
}

type Queues struct {
	Friends map[string][]string `json:"friends"`
	Groups  map[string][]string `json:"groups"`
}

type ChatInfo struct {
	From             string `json:"from"`
	To               string `json:"to"`
	PendingReplyNum  int    `json:"pendingReplyNum"`
	LastedContactNum int    `json:"lastedContactsNum"`
	AllContactsNum   int    `json:"allContactsNum"`
	UnReadNum        int    `json:"unReadNum"`
}

type ChatList struct {
	AllContactsNum    int      `json:"allContactsNum"`
	PendingReplyNum   int      `json:"pendingReplyNum"`
	LastedContactsNum int      `json:"lastedContactsNum"`
	Friends           []string `json:"friends"` // most recent first
}

var (
	listenRE  = regexp.MustCompile(`msg=listening proto=(\w+) addr=(\S+)`)
	releaseRE = regexp.MustCompile(`^[0-9a-f]{7,16}$`)
)

type gen struct {
	t    *testing.T
	ws   string
	http string
	m    Manifest
	tok  map[string]string // user → token used to log in
	next int               // client id counter
	open int               // connections open
}

func TestGenerate(t *testing.T) {
	bin := os.Getenv("IMGATE_OLD_BIN")
	if bin == "" {
		t.Skip("IMGATE_OLD_BIN not set")
	}
	release := os.Getenv("IMGATE_OLD_RELEASE")
	if release == "" {
		release = "a9f4499"
	}
	if !releaseRE.MatchString(release) {
		t.Fatalf("IMGATE_OLD_RELEASE %q: want a short commit, 7-16 lowercase hex digits", release)
	}
	out := os.Getenv("IMGATE_FIXTURE_OUT") // default: testdata
	if out == "" {
		out = ".."
	}
	out, err := filepath.Abs(out)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	data := filepath.Join(work, "data")
	cmd := exec.Command(bin, "-ws-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-data", data,
		"-token-ttl", "876000h", "-rate-limit", "-1", "-log-level", "debug")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logBuf bytes.Buffer
	addrs := make(chan [2]string, 2)
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logBuf.WriteString(sc.Text() + "\n")
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				addrs <- [2]string{m[1], m[2]}
			}
		}
		exited <- cmd.Wait()
	}()
	defer func() { _ = cmd.Process.Kill() }()
	g := &gen{t: t, tok: map[string]string{}, m: Manifest{Release: release, Offline: map[string]Queues{},
		Unread: map[string]map[string]int{}, ChatList: map[string]ChatList{}}}
	for i := 0; i < 2; i++ {
		select {
		case a := <-addrs:
			if a[0] == "websocket" {
				g.ws = a[1]
			} else {
				g.http = "http://" + a[1]
			}
		case <-time.After(bound):
			t.Fatal("no listeners announced")
		}
	}
	g.scenario()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("old server exit: %v", err)
		}
	case <-time.After(bound):
		t.Fatal("old server did not stop")
	}
	if !strings.Contains(logBuf.String(), "msg=stopped") {
		t.Fatalf("no clean stop:\n%s", logBuf.String())
	}
	if err := writeArchive(filepath.Join(out, "data-"+release+".tar.gz"), data); err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(g.m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "data-"+release+".json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeArchive tars dir as "data/…" with fixed owners and times.
func writeArchive(path, dir string) error {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	var files []string
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, p)
		}
		return nil
	}); err != nil {
		return err
	}
	sort.Strings(files)
	mtime := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if err := tw.WriteHeader(&tar.Header{Name: "data/" + filepath.ToSlash(rel), Mode: 0o644, Size: int64(len(b)), ModTime: mtime, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(b); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// post sends body to the HTTP API and decodes the envelope's data into v.
func (g *gen) post(path, body string, v any) {
	g.t.Helper()
	resp, err := http.Post(g.http+path, "application/json", strings.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var env struct {
		Code int
		Data json.RawMessage
	}
	if resp.StatusCode != 200 || json.Unmarshal(b, &env) != nil || env.Code != 200 {
		g.t.Fatalf("POST %s %s: %d %s", path, body, resp.StatusCode, b)
	}
	if v != nil {
		if err := json.Unmarshal(env.Data, v); err != nil {
			g.t.Fatalf("POST %s: data %s: %v", path, env.Data, err)
		}
	}
}

// register binds token (empty: generated) to user and records it.
func (g *gen) register(id string, typ int, nick, terminal, token, receiver string) {
	g.t.Helper()
	body, _ := json.Marshal(map[string]any{"senderId": id, "type": typ, "nick": nick, "terminal": terminal, "token": token, "receiverId": receiver})
	var data *struct{ Token string }
	g.post("/im/vanke/initUser", string(body), &data)
	generated := token == ""
	if generated {
		if data == nil || len(data.Token) != 32 {
			g.t.Fatalf("no generated token for %s", id)
		}
		token = data.Token
	}
	for i := range g.m.Users {
		if u := &g.m.Users[i]; u.ID == id {
			u.Tokens, u.Generated = append(u.Tokens, token), append(u.Generated, generated)
			u.Nick, u.Terminal = nick, terminal
			return
		}
	}
	g.m.Users = append(g.m.Users, User{ID: id, Type: typ, Nick: nick, Terminal: terminal, Tokens: []string{token}, Generated: []bool{generated}})
	g.tok[id] = token
}

type client struct {
	g    *gen
	user string
	c    *websocket.Conn
	in   chan string
	done chan error
}

func (g *gen) connect(user string) *client {
	g.t.Helper()
	d := websocket.Dialer{HandshakeTimeout: bound}
	c, resp, err := d.Dial("ws://"+g.ws+"/?token="+g.tok[user], nil)
	if err != nil {
		g.t.Fatalf("dial %s: %v", user, err)
	}
	resp.Body.Close()
	cl := &client{g: g, user: user, c: c, in: make(chan string, 100), done: make(chan error, 1)}
	go func() {
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				cl.done <- err
				close(cl.in)
				return
			}
			cl.in <- string(b)
		}
	}()
	if f := cl.read(); !strings.HasPrefix(f, `{"code":10007,`) {
		g.t.Fatalf("login %s: %s", user, f)
	}
	g.open++
	return cl
}

func (c *client) send(v any) {
	c.g.t.Helper()
	b, _ := json.Marshal(v)
	if err := c.c.WriteMessage(websocket.TextMessage, b); err != nil {
		c.g.t.Fatal(err)
	}
}

func (c *client) read() string {
	c.g.t.Helper()
	select {
	case f, ok := <-c.in:
		if !ok {
			c.g.t.Fatalf("%s: connection ended: %v", c.user, <-c.done)
		}
		return f
	case <-time.After(bound):
		c.g.t.Fatalf("%s: nothing to read", c.user)
	}
	return ""
}

// expect reads len(prefixes) frames, each starting with one of prefixes
// (in any order), and returns them in the order of prefixes.
func (c *client) expect(prefixes ...string) []string {
	c.g.t.Helper()
	got := make([]string, len(prefixes))
	for range prefixes {
		f := c.read()
		ok := false
		for i, p := range prefixes {
			if got[i] == "" && strings.HasPrefix(f, p) {
				got[i], ok = f, true
				break
			}
		}
		if !ok {
			c.g.t.Fatalf("%s: unexpected frame %s (want %q)", c.user, f, prefixes)
		}
	}
	return got
}

// close ends the connection with a CLOSE handshake and waits for the end,
// so the server has it offline before the next step.
func (c *client) close() {
	c.g.t.Helper()
	_ = c.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(bound))
	for range c.in {
	}
	c.c.Close()
	c.g.open--
	c.g.waitConns()
}

// waitConns waits until the server counts as many connections as are
// open: a closed one is then offline.
func (g *gen) waitConns() {
	g.t.Helper()
	want := fmt.Sprintf("\nimgate_connections %d\n", g.open)
	deadline := time.Now().Add(bound)
	for {
		resp, err := http.Get(g.http + "/metrics")
		if err != nil {
			g.t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("metrics never showed %q:\n%s", want, b)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// chat sends one message and checks its ack; id "" lets the server pick.
// Returns the message as recorded.
func (c *client) chat(to, group, content string, clientID bool, wantAck int) Message {
	c.g.t.Helper()
	req := map[string]any{"cmd": 11, "from": c.user, "msgType": 0, "content": content}
	if group != "" {
		req["chatType"], req["groupId"] = 1, group
	} else {
		req["chatType"], req["to"] = 2, to
	}
	id := ""
	if clientID {
		c.g.next++
		id = fmt.Sprintf("%s%0*x", c.g.m.Release, 32-len(c.g.m.Release), c.g.next)
		req["id"] = id
	}
	c.send(req)
	ackPrefix := `{"code":`
	var frames []string
	if group != "" {
		frames = c.expect(ackPrefix, `{"command":11,`) // the sender's own push (compat)
	} else {
		frames = c.expect(ackPrefix)
	}
	var ack struct {
		Code int
		Data struct {
			ID         string
			Seq        int
			CreateTime int64
		}
	}
	if err := json.Unmarshal([]byte(frames[0]), &ack); err != nil || ack.Code != wantAck {
		c.g.t.Fatalf("%s → %s%s %q: ack %s, want %d", c.user, to, group, content, frames[0], wantAck)
	}
	if clientID && ack.Data.ID != id {
		c.g.t.Fatalf("ack id %s, sent %s", ack.Data.ID, id)
	}
	m := Message{ID: ack.Data.ID, From: c.user, To: to, Group: group, Content: content, Seq: ack.Data.Seq,
		CreateTime: ack.Data.CreateTime, Ack: ack.Code, ClientID: clientID}
	c.g.m.Messages = append(c.g.m.Messages, m)
	return m
}

// push reads one push and checks it is message m.
func (c *client) push(m Message) {
	c.g.t.Helper()
	f := c.expect(`{"command":11,`)[0]
	if !strings.Contains(f, `"id":"`+m.ID+`"`) {
		c.g.t.Fatalf("%s: push %s, want id %s", c.user, f, m.ID)
	}
}

func (c *client) recall(m Message, others ...*client) {
	c.g.t.Helper()
	c.send(map[string]any{"cmd": 15, "id": m.ID})
	c.expect(`{"code":10025,"command":16,`, `{"command":16,"data":`)
	for _, o := range others {
		if f := o.expect(`{"command":16,`)[0]; !strings.Contains(f, m.ID) {
			c.g.t.Fatalf("recall notice %s", f)
		}
	}
	for i := range c.g.m.Messages {
		if c.g.m.Messages[i].ID == m.ID {
			c.g.m.Messages[i].Recalled = true
		}
	}
}

func (c *client) join(group string, others ...*client) {
	c.g.t.Helper()
	c.send(map[string]any{"cmd": 7, "groupId": group})
	c.expect(`{"code":10011,"command":8,`)
	for _, o := range others {
		o.expect(`{"command":9,`)
	}
}

// pull takes c's offline queue of peer or group (cmd 19 type 0) and
// checks it holds want.
func (c *client) pull(peer, group string, want ...Message) {
	c.g.t.Helper()
	req := map[string]any{"cmd": 19, "type": 0, "userId": c.user}
	if group != "" {
		req["groupId"] = group
	} else {
		req["fromUserId"] = peer
	}
	c.send(req)
	f := c.expect(`{"code":10016,"command":20,`)[0]
	q := c.g.decodeQueues(f)
	got := append(q.Friends[peer], q.Groups[group]...)
	var ids []string
	for _, m := range want {
		ids = append(ids, m.ID)
	}
	if fmt.Sprint(got) != fmt.Sprint(ids) {
		c.g.t.Fatalf("%s pulled %v, want %v\n%s", c.user, got, ids, f)
	}
}

func (g *gen) decodeQueues(f string) Queues {
	g.t.Helper()
	var r struct {
		Data struct {
			Friends map[string][]struct{ ID string }
			Groups  map[string][]struct{ ID string }
		}
	}
	if err := json.Unmarshal([]byte(f), &r); err != nil {
		g.t.Fatalf("%s: %v", f, err)
	}
	q := Queues{Friends: map[string][]string{}, Groups: map[string][]string{}}
	for p, l := range r.Data.Friends {
		for _, m := range l {
			q.Friends[p] = append(q.Friends[p], m.ID)
		}
	}
	for p, l := range r.Data.Groups {
		for _, m := range l {
			q.Groups[p] = append(q.Groups[p], m.ID)
		}
	}
	return q
}

// scenario is the fixture: see testdata/README.md.
func (g *gen) scenario() {
	const group = "g_fixture"
	g.m.Group = group
	// Users: generated and client-chosen (32 hex) tokens, the three types.
	g.register("agent_a1", 1, "Agent Ann", "pc", "5eed0000000000000000000000000a11", "")
	g.register("agent_a2", 1, "Agent Bob", "pc", "", "")
	g.register("consultant_c1", 2, "顾问蔡", "app", "5eed00000000000000000000000000c1", "")
	g.register("visitor_v1", 0, "访客一", "h5", "", "agent_a1")
	var partner struct{ ID string }
	body := `{"senderId":"visitor_v2","type":0,"nick":"Visitor Two","terminal":"pc","token":"5eed0000000000000000000000000b02","receiverId":"agent_a1"}`
	g.post("/im/vanke/getReceiver", body, &partner)
	if partner.ID != "agent_a1" {
		g.t.Fatalf("getReceiver: %+v", partner)
	}
	g.m.Users = append(g.m.Users, User{ID: "visitor_v2", Type: 0, Nick: "Visitor Two", Terminal: "pc",
		Tokens: []string{"5eed0000000000000000000000000b02"}, Generated: []bool{false}})
	g.tok["visitor_v2"] = "5eed0000000000000000000000000b02"
	// agent_a1 also holds a generated token (same terminal).
	g.register("agent_a1", 1, "Agent Ann", "pc", "", "")

	// The group: agent_a1, agent_a2, consultant_c1, visitor_v1.
	a1 := g.connect("agent_a1")
	a1.join(group)
	a2 := g.connect("agent_a2")
	a2.join(group, a1)
	c1 := g.connect("consultant_c1")
	c1.join(group, a1, a2)
	v1 := g.connect("visitor_v1")
	v1.join(group, a1, a2, c1)
	g.m.Members = []string{"agent_a1", "agent_a2", "consultant_c1", "visitor_v1"}
	a2.close()
	c1.close()

	// visitor_v1 ↔ agent_a1, both online; one recalled message.
	m := v1.chat("agent_a1", "", "你好，我想看看房子", true, 10000)
	a1.push(m)
	m = a1.chat("visitor_v1", "", "您好，请问预算多少？", true, 10000)
	v1.push(m)
	m = v1.chat("agent_a1", "", `{"budget":300,"unit":"万"}`, false, 10000)
	a1.push(m)
	m = a1.chat("visitor_v1", "", "稍等，我查一下", true, 10000)
	v1.push(m)
	a1.recall(m, v1)
	m = a1.chat("visitor_v1", "", "这套房子在三楼", true, 10000)
	v1.push(m)
	var info ChatInfo
	g.post("/im/vanke/chatInfo", `{"from":"agent_a1","to":"visitor_v1","op":2}`, &info) // a1 read v1
	a1.close()

	// visitor_v2 → agent_a1 offline: three queued (q| entries).
	v2 := g.connect("visitor_v2")
	q1 := v2.chat("agent_a1", "", "在吗？", true, 10001)
	q2 := v2.chat("agent_a1", "", "我想预约周六看房", true, 10001)
	q3 := v2.chat("agent_a1", "", "上午十点可以吗", false, 10001)

	// agent_a2 → visitor_v2: one online, two queued then pulled, one left
	// queued.
	a2 = g.connect("agent_a2")
	m = a2.chat("visitor_v2", "", "欢迎咨询", true, 10000)
	v2.push(m)
	v2.close()
	p1 := a2.chat("visitor_v2", "", "楼盘资料已发送", true, 10001)
	p2 := a2.chat("visitor_v2", "", "有问题随时联系", true, 10001)
	v2 = g.connect("visitor_v2")
	v2.pull("agent_a2", "", p1, p2)
	v2.close()
	p3 := a2.chat("visitor_v2", "", "周末有优惠活动", true, 10001)
	a2.close()

	// visitor_v1 → consultant_c1 offline: three queued, the second
	// recalled (so it leaves the queue).
	r1 := v1.chat("consultant_c1", "", "请问贷款怎么办理？", true, 10001)
	r2 := v1.chat("consultant_c1", "", "发错了", true, 10001)
	r3 := v1.chat("consultant_c1", "", "首付需要多少？", true, 10001)
	v1.recall(r2)

	// The group, agent_a2 and consultant_c1 offline (Q| entries).
	a1 = g.connect("agent_a1")
	gm1 := a1.chat("", group, "群公告：周末看房团", false, 10000)
	v1.push(gm1)
	gm2 := v1.chat("", group, "我报名", true, 10000)
	a1.push(gm2)
	gm3 := a1.chat("", group, "集合地点待定", false, 10000)
	v1.push(gm3)
	a2 = g.connect("agent_a2")
	a2.pull("", group, gm1, gm2, gm3)
	a2.close()
	gm4 := v1.chat("", group, "我带家人一起", true, 10000)
	a1.push(gm4)
	a1.recall(gm3, v1)

	// What the old server counts, read back without changing anything:
	// chatInfo op 1 on an existing contact with isConcurrent 0 marks
	// nothing; cmd 17 type 2 reads the chat list.
	for _, pair := range [][2]string{
		{"agent_a1", "visitor_v1"}, {"agent_a1", "visitor_v2"}, {"visitor_v1", "agent_a1"},
		{"visitor_v2", "agent_a1"}, {"visitor_v2", "agent_a2"}, {"agent_a2", "visitor_v2"},
		{"consultant_c1", "visitor_v1"}, {"visitor_v1", "consultant_c1"},
	} {
		var ci ChatInfo
		g.post("/im/vanke/chatInfo", fmt.Sprintf(`{"from":%q,"to":%q,"op":1,"isNewMember":0,"isConcurrent":0}`, pair[0], pair[1]), &ci)
		if ci.From != pair[0] || ci.To != pair[1] {
			g.t.Fatalf("chatInfo %v: %+v", pair, ci)
		}
		g.m.ChatInfo = append(g.m.ChatInfo, ci)
	}
	a1.close()
	v1.close()
	for _, u := range []string{"agent_a1", "agent_a2", "consultant_c1", "visitor_v1", "visitor_v2"} {
		c := g.connect(u)
		c.send(map[string]any{"cmd": 17, "type": 2, "userId": u, "extras": map[string]any{"pullType": 1}})
		f := c.expect(`{"code":200,"command":18,`)[0]
		var r struct {
			Data struct {
				AllContactsNum, PendingReplyNum, LastedContactsNum int
				Friends                                            []struct {
					UserID    string
					UnReadNum int
				}
			}
		}
		if err := json.Unmarshal([]byte(f), &r); err != nil {
			g.t.Fatalf("%s: %v", f, err)
		}
		cl := ChatList{AllContactsNum: r.Data.AllContactsNum, PendingReplyNum: r.Data.PendingReplyNum, LastedContactsNum: r.Data.LastedContactsNum}
		g.m.Unread[u] = map[string]int{}
		for _, fr := range r.Data.Friends {
			cl.Friends = append(cl.Friends, fr.UserID)
			g.m.Unread[u][fr.UserID] = fr.UnReadNum
		}
		g.m.ChatList[u] = cl
		c.close()
	}

	ids := func(ms ...Message) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.ID)
		}
		return out
	}
	g.m.Offline = map[string]Queues{
		"agent_a1":      {Friends: map[string][]string{"visitor_v2": ids(q1, q2, q3)}, Groups: map[string][]string{}},
		"agent_a2":      {Friends: map[string][]string{}, Groups: map[string][]string{group: ids(gm4)}},
		"consultant_c1": {Friends: map[string][]string{"visitor_v1": ids(r1, r3)}, Groups: map[string][]string{group: ids(gm1, gm2, gm4)}},
		"visitor_v1":    {Friends: map[string][]string{}, Groups: map[string][]string{}},
		"visitor_v2":    {Friends: map[string][]string{"agent_a2": ids(p3)}, Groups: map[string][]string{}},
	}
	// Check the queues as the old server holds them, without taking:
	// type 2 per peer and group.
	for u, q := range g.m.Offline {
		c := g.connect(u)
		for _, peer := range []string{"agent_a1", "agent_a2", "consultant_c1", "visitor_v1", "visitor_v2"} {
			if peer == u {
				continue
			}
			c.send(map[string]any{"cmd": 19, "type": 2, "userId": u, "fromUserId": peer})
			got := g.decodeQueues(c.expect(`{"code":10022,"command":20,`)[0]).Friends[peer]
			if fmt.Sprint(got) != fmt.Sprint(q.Friends[peer]) {
				g.t.Fatalf("%s's queue of %s: %v, want %v", u, peer, got, q.Friends[peer])
			}
		}
		if u != "visitor_v2" { // the only non-member
			c.send(map[string]any{"cmd": 19, "type": 2, "userId": u, "groupId": group})
			got := g.decodeQueues(c.expect(`{"code":10022,"command":20,`)[0]).Groups[group]
			if fmt.Sprint(got) != fmt.Sprint(q.Groups[group]) {
				g.t.Fatalf("%s's group queue: %v, want %v", u, got, q.Groups[group])
			}
		}
		c.close()
	}
	g.m.GeneratedAt = time.Now().UnixMilli()
}
