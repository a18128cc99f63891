package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// nginxSite is the part of nginx.conf that README "Deploying" shows: TLS
// terminated by nginx, wss:// to the WebSocket listener and https://…/im/
// to the HTTP API. {listen}, {ws} and {api} are filled in by the test.
const nginxSite = `    upstream imgate_ws {
{ws}    }
    upstream imgate_api {
{api}        keepalive 8;
    }
    # Connection: upgrade when the client asked for one, close otherwise.
    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      close;
    }
    server {
        listen {listen} ssl;
        ssl_certificate     cert.pem;
        ssl_certificate_key key.pem;
        ssl_protocols       TLSv1.2 TLSv1.3;

        # WebSocket: wss://host/?token=…
        location / {
            proxy_pass http://imgate_ws;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 120s; # above -ping-interval (30s)
            proxy_send_timeout 120s;
            proxy_buffering off;
        }
        # HTTP API: https://host/im/vanke/…, with -api-key.
        location /im/ {
            proxy_pass http://imgate_api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }
    }
`

// nginxMain wraps nginxSite for a throwaway nginx: one process in the
// foreground as the current user (master_process off: no workers switched
// to another user, who could not read the test's directory), with every
// path under the -p directory.
const nginxMain = `master_process off;
pid nginx.pid;
error_log stderr warn;
events {
    worker_connections 64;
}
http {
    access_log off;
    client_body_temp_path body;
    proxy_temp_path proxy;
    fastcgi_temp_path fastcgi;
    uwsgi_temp_path uwsgi;
    scgi_temp_path scgi;
{site}}
`

// nginxBinary finds nginx (Debian installs it in /usr/sbin, which is not
// on every user's PATH). Without it the test is skipped, or fails when
// IMGATE_REQUIRE_NGINX=1 (.ci/run).
func nginxBinary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	if os.Getenv("IMGATE_REQUIRE_NGINX") == "1" {
		t.Fatal("nginx not found and IMGATE_REQUIRE_NGINX=1 (apt-get install nginx)")
	}
	t.Skip("nginx not installed (Debian package nginx); IMGATE_REQUIRE_NGINX=1 fails instead")
	return ""
}

// selfSignedCert writes cert.pem and key.pem (ECDSA P-256, for 127.0.0.1
// and localhost) into dir and returns a client config trusting only it.
func selfSignedCert(t testing.TB, dir string) *tls.Config {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "imgate deploy test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
}

// tlsProxy is nginx terminating TLS in front of ts.
type tlsProxy struct {
	t    testing.TB
	addr string // 127.0.0.1:port of nginx
	tls  *tls.Config
	api  *http.Client
}

// startNginx writes the config and certificate into a temp dir, starts
// nginx in front of every node of ts and waits until it accepts
// connections.
func startNginx(t testing.TB, ts *testServer) *tlsProxy {
	t.Helper()
	bin := nginxBinary(t)
	dir := t.TempDir()
	p := &tlsProxy{t: t, tls: selfSignedCert(t, dir)}
	var ws, api strings.Builder
	for _, a := range ts.wsAll {
		fmt.Fprintf(&ws, "        server %s;\n", a)
	}
	for _, a := range ts.httpAll {
		fmt.Fprintf(&api, "        server %s;\n", strings.TrimPrefix(a, "http://"))
	}
	// The free port is found by binding :0 and letting go, so another
	// process can take it first: nginx then exits at once, and we retry.
	for attempt := 1; ; attempt++ {
		p.addr = freeLoopbackAddr(t)
		site := strings.NewReplacer("{listen}", p.addr, "{ws}", ws.String(), "{api}", api.String()).Replace(nginxSite)
		conf := strings.Replace(nginxMain, "{site}", site, 1)
		if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		err := runNginx(t, bin, dir, p.addr)
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(err.Error(), "in use") {
			t.Fatal(err)
		}
	}
	tr := &http.Transport{TLSClientConfig: p.tls}
	t.Cleanup(tr.CloseIdleConnections)
	p.api = &http.Client{Transport: tr, Timeout: waitBound()}
	return p
}

// runNginx starts nginx on dir and waits until addr accepts connections;
// it returns an error, with nginx's output, if nginx exits first. A
// cleanup stops the nginx it started.
func runNginx(t testing.TB, bin, dir, addr string) error {
	t.Helper()
	cmd := exec.Command(bin, "-e", "stderr", "-p", dir+"/", "-c", filepath.Join(dir, "nginx.conf"), "-g", "daemon off;")
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start nginx: %w", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			// SIGTERM: nginx's fast shutdown; SIGKILL if it lingers.
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(waitBound()):
				_ = cmd.Process.Kill()
				<-exited
			}
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("nginx output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(2 * waitBound())
	for {
		select {
		case <-exited:
			return fmt.Errorf("nginx exited: %v\n%s", waitErr, out.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("nginx not listening on %s after %v\n%s", addr, 2*waitBound(), out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freeLoopbackAddr returns a 127.0.0.1 address nothing listened on a
// moment ago.
func freeLoopbackAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// post sends a JSON body to the HTTP API through nginx, with the bearer
// key when key is not empty.
func (p *tlsProxy) post(path, key, body string) (int, string) {
	p.t.Helper()
	req, err := http.NewRequest(http.MethodPost, "https://"+p.addr+path, strings.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := p.api.Do(req)
	if err != nil {
		p.t.Fatalf("POST https://%s%s: %v", p.addr, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// register is initUser through nginx; it returns the generated token.
func (p *tlsProxy) register(key, id string, typ int) string {
	p.t.Helper()
	code, body := p.post("/im/vanke/initUser", key, fmt.Sprintf(`{"senderId":%q,"type":%d,"token":""}`, id, typ))
	var r struct {
		Code int
		Data struct{ Token string }
	}
	if code != 200 || json.Unmarshal([]byte(body), &r) != nil || r.Code != 200 || len(r.Data.Token) != 32 {
		p.t.Fatalf("initUser %s over https: HTTP %d %s", id, code, body)
	}
	return r.Data.Token
}

// login dials wss:// through nginx with token and checks the login frame.
func (p *tlsProxy) login(token string) *wsClient {
	p.t.Helper()
	d := websocket.Dialer{TLSClientConfig: p.tls, HandshakeTimeout: waitBound()}
	c, resp, err := d.Dial("wss://"+p.addr+"/?token="+token, nil)
	if err != nil {
		if resp != nil {
			b, _ := io.ReadAll(resp.Body)
			p.t.Fatalf("dial wss://%s: %v: %s %s", p.addr, err, resp.Status, bytes.TrimSpace(b))
		}
		p.t.Fatalf("dial wss://%s: %v", p.addr, err)
	}
	resp.Body.Close()
	p.t.Cleanup(func() { c.Close() })
	wc := &wsClient{t: p.t, c: c}
	if got := wc.read(); !strings.HasPrefix(got, `{"code":10007,"command":6,`) {
		p.t.Fatalf("login frame over wss = %s", got)
	}
	return wc
}

// README "Deploying": nginx terminates TLS for both listeners. Through it
// only: initUser over https with the API key (refused without it), logins
// over wss://, a chat acked and pushed, the receiver's close, an offline
// ack, and the receiver back over wss:// pulling what it missed.
func TestDeploy_TLSBehindNginx(t *testing.T) {
	nginxBinary(t) // skip before starting anything
	const key = "deploy-test-key-0123456789"
	ts := newTestServer(t, func(c *config) { c.APIKey = key })
	p := startNginx(t, ts)

	if code, body := p.post("/im/vanke/initUser", "", `{"senderId":"visitor_tls","type":0,"token":""}`); code != http.StatusUnauthorized {
		t.Fatalf("initUser without the API key through nginx: HTTP %d %s", code, body)
	}
	tv, ta := p.register(key, "visitor_tls", 0), p.register(key, "agent_tls", 1)
	v, a := p.login(tv), p.login(ta)

	v.send(`{"cmd":11,"to":"agent_tls","chatType":2,"content":"over tls"}`)
	ack := v.read()
	m1 := ackRE.FindStringSubmatch(ack)
	if m1 == nil || m1[1] != "10000" {
		t.Fatalf("ack of an online chat over wss: %s", ack)
	}
	push, ok, err := parsePush([]byte(a.read()))
	if err != nil || !ok || push.ID != m1[3] || push.From != "visitor_tls" || push.Content != "over tls" {
		t.Fatalf("push over wss: %+v ok=%v err=%v", push, ok, err)
	}

	// The receiver closes: the close handshake runs end to end, through
	// nginx, and the gateway counts it offline.
	if err := a.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(waitBound())); err != nil {
		t.Fatalf("close: %v", err)
	}
	_ = a.c.SetReadDeadline(time.Now().Add(waitBound()))
	for {
		_, _, err := a.c.ReadMessage()
		if err == nil {
			continue // a frame sent before the close
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("waiting for the close reply through nginx: %v", err)
		}
		break
	}
	a.c.Close()
	agent := uidOf(t, ts, "agent_tls")
	waitFor(t, "agent_tls offline", func() bool { return !ts.online(agent) })

	v.send(`{"cmd":11,"to":"agent_tls","chatType":2,"content":"while away"}`)
	ack = v.read()
	m2 := ackRE.FindStringSubmatch(ack)
	if m2 == nil || m2[1] != "10001" {
		t.Fatalf("ack of a chat to an offline receiver: %s", ack)
	}

	a2 := p.login(ta)
	var got bool
	for _, m := range pullOffline(t, a2, "") {
		switch m.ID {
		case m2[3]:
			got = m.Content == "while away" && m.From == "visitor_tls"
		case m1[3]: // a duplicate the protocol allows (README "Delivery")
		default:
			t.Fatalf("offline pull over wss returned an unknown message %+v", m)
		}
	}
	if !got {
		t.Fatalf("offline pull over wss lacks message %s", m2[3])
	}
}
