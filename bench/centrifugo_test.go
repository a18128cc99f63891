package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// verifyHS256 checks token's signature under secret with crypto/hmac, apart
// from hs256, and returns its header and claims decoded.
func verifyHS256(t *testing.T, token, secret string) (header, claims map[string]any, ok bool) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("%q: %d parts, want 3", token, len(parts))
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatalf("signature: %v", err)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	ok = hmac.Equal(sig, mac.Sum(nil))
	for i, dst := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatalf("part %d %s: %v", i, b, err)
		}
	}
	return header, claims, ok
}

func TestHS256(t *testing.T) {
	// The example token of jwt.io's HS256 debugger.
	const jwtIO = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	if got := hs256("your-256-bit-secret", `{"sub":"1234567890","name":"John Doe","iat":1516239022}`); got != jwtIO {
		t.Errorf("jwt.io vector:\n got %s\nwant %s", got, jwtIO)
	}
	// A token Centrifugo v6.9.1 accepted (its connect reply followed)
	// with client.token.hmac_secret_key = cfSecret.
	const accepted = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1X3IifQ.KmYVQVi2PCajv6iUoIO9kitCrkb2Ftv1qDBzqmYyVp4"
	if got := cfToken(cfSecret, "u_r"); got != accepted {
		t.Errorf("cfToken:\n got %s\nwant %s", got, accepted)
	}

	for _, user := range []string{"bs1a2b3c_0", "br1a2b3c_199", `quote"and\backslash`, "ünïcode"} {
		tok := cfToken(cfSecret, user)
		header, claims, ok := verifyHS256(t, tok, cfSecret)
		if !ok {
			t.Errorf("%q: signature does not verify", user)
		}
		if header["alg"] != "HS256" || header["typ"] != "JWT" || len(header) != 2 {
			t.Errorf("%q: header %v", user, header)
		}
		if claims["sub"] != user || len(claims) != 1 {
			t.Errorf("%q: claims %v, want only sub", user, claims)
		}
		if _, _, ok := verifyHS256(t, tok, cfSecret+"x"); ok {
			t.Errorf("%q: verifies under another secret", user)
		}
		if _, _, ok := verifyHS256(t, cfToken(cfSecret+"x", user), cfSecret); ok {
			t.Errorf("%q: a token of another secret verifies", user)
		}
	}
}

func TestCFParse(t *testing.T) {
	const client = "ce1f5036-7e3e-4a00-8f6d-44802917a9c8"
	for _, tc := range []struct {
		msg  string
		want cfMsg
	}{
		// As Centrifugo v6.9.1 sends them.
		{`{}`, cfMsg{kind: cfPing}},
		{`{"id":1,"connect":{"client":"903341f0-ad2a-4975-87e9-5cc27624453d","version":"6.9.1 OSS","ping":25,"pong":true}}`, cfMsg{kind: cfConnect, id: 1}},
		{`{"id":2,"subscribe":{}}`, cfMsg{kind: cfSubscribe, id: 2}},
		{`{"id":3,"publish":{}}`, cfMsg{kind: cfPublish, id: 3}},
		{`{"id":4294967295,"publish":{}}`, cfMsg{kind: cfPublish, id: 1<<32 - 1}},
		{`{"id":5,"error":{"code":102,"message":"unknown channel"}}`, cfMsg{kind: cfError, id: 5, code: 102}},
		{`{"push":{"channel":"u_r","pub":{"data":"t1764581234567890123","info":{"user":"u_s","client":"` + client + `"}}}}`, cfMsg{kind: cfPub, sent: 1764581234567890123}},
		{`{"id":6,"subscribe":{}}`, cfMsg{kind: cfSubscribe, id: 6}},
		// The client protocol docs' forms.
		{`{"id":3,"error":{"code":103,"message":"permission denied"}}`, cfMsg{kind: cfError, id: 3, code: 103}},
		{`{"id":1,"error":{"code":109,"message":"token expired","temporary":true}}`, cfMsg{kind: cfError, id: 1, code: 109}},
		{`{"push":{"channel":"chat:index","pub":{"data":{"input":"hello"}}}}`, cfMsg{kind: cfPush}},
		{`{"push":{"channel":"chat:index","join":{"info":{"user":"42","client":"` + client + `"}}}}`, cfMsg{kind: cfPush}},
		{`{"push":{"channel":"chat:index","pub":{"data":"t1","offset":7}}}`, cfMsg{kind: cfPub, sent: 1}},
		{`{"id":7,"presence":{"presence":{}}}`, cfMsg{kind: cfReply, id: 7}},
		// Not what the server sends.
		{``, cfMsg{kind: cfBad}},
		{`{ }`, cfMsg{kind: cfBad}},
		{`{"id":,"publish":{}}`, cfMsg{kind: cfBad}},
		{`{"id":4294967296,"publish":{}}`, cfMsg{kind: cfBad}},
		{`{"id":3,"error":{"code":"x"}}`, cfMsg{kind: cfBad}},
		{`{"push":{"channel":"c","pub":{"data":"tx"}}}`, cfMsg{kind: cfBad}},
		{`{"push":{"channel":"c","pub":{"data":"t12x"}}}`, cfMsg{kind: cfBad}},
		{`{"push":{"channel":"c","pub":{"data":"t12`, cfMsg{kind: cfBad}},
		{`{"push":{"channel":"c","pub":{"data":"t9999999999999999999"}}}`, cfMsg{kind: cfBad}},
		{`{"push":{"channel":"c","pub":{"data":"t12345678901234567890"}}}`, cfMsg{kind: cfBad}},
		{`{"command":11,"content":"t1"}`, cfMsg{kind: cfBad}},
	} {
		if got := cfParse([]byte(tc.msg)); got != tc.want {
			t.Errorf("cfParse(%s) = %+v, want %+v", tc.msg, got, tc.want)
		}
	}
}

// unmask returns the payloads of the masked client frames in b.
func unmask(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 6 || b[0] != 0x81 || b[1]&0x80 == 0 {
			t.Fatalf("not a masked TEXT frame: % x", b)
		}
		n, hl := int(b[1]&0x7f), 2
		switch n {
		case 126:
			n, hl = int(b[2])<<8|int(b[3]), 4
		case 127:
			t.Fatal("frame over 64 KiB")
		}
		mask := b[hl : hl+4]
		p := bytes.Clone(b[hl+4 : hl+4+n])
		for i := range p {
			p[i] ^= mask[i&3]
		}
		out = append(out, p)
		b = b[hl+4+n:]
	}
	return out
}

// A sender's frames through cfFrame: the connect reply opens its window,
// each publish reply is an ack that sends the next, a ping is answered.
func TestCFFrameSender(t *testing.T) {
	s := newStats(false)
	c := &client{s: s, window: 2}
	w := &wsConn{role: roleSender, channel: "br1_0", mask: [4]byte{1, 2, 3, 4}, token: "tok"}

	out := w.appendConnect(nil)
	if got := unmask(t, out); len(got) != 1 || string(got[0]) != `{"id":1,"connect":{"token":"tok"}}` {
		t.Fatalf("connect: %q", got)
	}
	out = c.cfFrame(w, true, []byte(`{"id":1,"connect":{"client":"x","version":"6.9.1 OSS","ping":25,"pong":true}}`), 100, nil)
	if s.logins.Load() != 1 || len(w.inflight) != 2 {
		t.Fatalf("after connect: logins %d, in flight %d", s.logins.Load(), len(w.inflight))
	}
	for i, p := range unmask(t, out) {
		var cmd struct {
			ID      int
			Publish struct{ Channel, Data string }
		}
		if err := json.Unmarshal(p, &cmd); err != nil {
			t.Fatalf("publish %s: %v", p, err)
		}
		if cmd.ID != cfFirstPubID+i || cmd.Publish.Channel != "br1_0" || cmd.Publish.Data != "t100" {
			t.Fatalf("publish %d: %s", i, p)
		}
	}
	// Two acks and a ping in one frame, one per line.
	out = c.cfFrame(w, true, []byte("{\"id\":3,\"publish\":{}}\n{}\n{\"id\":4,\"publish\":{}}"), 150, nil)
	got := unmask(t, out)
	if s.acks.Load() != 2 || s.heartbeats.Load() != 1 || len(got) != 3 || string(got[1]) != `{}` {
		t.Fatalf("acks %d, pings %d, sent %q", s.acks.Load(), s.heartbeats.Load(), got)
	}
	if !bytes.HasPrefix(got[0], []byte(`{"id":5,`)) || !bytes.HasPrefix(got[2], []byte(`{"id":6,`)) {
		t.Fatalf("next publishes: %q", got)
	}
	if s.mu.ack.n != 2 || s.mu.ack.quantile(1) != 50 {
		t.Fatalf("ack histogram: %d samples, max %v", s.mu.ack.n, s.mu.ack.quantile(1))
	}
	// A refusal frees its slot; an ack out of order is reported.
	c.cfFrame(w, true, []byte(`{"id":5,"error":{"code":103,"message":"permission denied"}}`), 200, nil)
	c.cfFrame(w, true, []byte(`{"id":9,"publish":{}}`), 200, nil)
	res := s.result("chat", 1)
	if res.ReplyCodes["103"] != 1 || len(res.Errors) != 2 || !strings.Contains(res.Errors[1], "publish reply 9 where 6 was next") {
		t.Fatalf("codes %v, errors %q", res.ReplyCodes, res.Errors)
	}
	// A fragment is reported, not read.
	c.cfFrame(w, false, []byte(`{"id":8,`), 200, nil)
	if res := s.result("chat", 1); len(res.Errors) != 3 || res.Acks != 3 {
		t.Fatalf("fragment: acks %d, errors %q", res.Acks, res.Errors)
	}
}

// A receiver subscribes once connected, counts as logged in once
// subscribed, and times each publication pushed.
func TestCFFrameReceiver(t *testing.T) {
	s := newStats(false)
	c := &client{s: s, window: 16}
	w := &wsConn{role: roleReceiver, channel: "br1_0"}
	out := c.cfFrame(w, true, []byte(`{"id":1,"connect":{"client":"x","version":"6.9.1 OSS","ping":25,"pong":true}}`), 0, nil)
	if got := unmask(t, out); len(got) != 1 || string(got[0]) != `{"id":2,"subscribe":{"channel":"br1_0"}}` || s.logins.Load() != 0 {
		t.Fatalf("subscribe: %q, logins %d", got, s.logins.Load())
	}
	c.cfFrame(w, true, []byte(`{"id":2,"subscribe":{}}`), 0, nil)
	if s.logins.Load() != 1 || !w.loggedIn {
		t.Fatal("not logged in once subscribed")
	}
	pub := `{"push":{"channel":"br1_0","pub":{"data":"t1000","info":{"user":"bs1_0","client":"y"}}}}`
	c.cfFrame(w, true, []byte(pub+"\n"+strings.Replace(pub, "t1000", "t1500", 1)+"\n"), 3000, nil)
	if s.deliveries.Load() != 2 || s.mu.delivery.n != 2 || s.mu.delivery.quantile(1) != 2000 {
		t.Fatalf("deliveries %d, max %v", s.deliveries.Load(), s.mu.delivery.quantile(1))
	}
	if res := s.result("chat", 1); len(res.Errors)+len(res.ReplyCodes) > 0 {
		t.Fatalf("errors %v %q", res.ReplyCodes, res.Errors)
	}
}

func TestProtoFlag(t *testing.T) {
	for _, tc := range []struct {
		mode string
		args []string
		want string
	}{
		{"group", []string{"-proto", "centrifugo"}, "only the chat mode"},
		{"connect", []string{"-proto", "centrifugo"}, "only the chat mode"},
		{"offline", []string{"-proto", "centrifugo"}, "only the chat mode"},
		{"http", []string{"-proto", "centrifugo"}, "only the chat mode"},
		{"chat", []string{"-proto", "centrifugo", "-ack"}, "-ack"},
		{"chat", []string{"-proto", "nats"}, "imgate or centrifugo"},
	} {
		_, err := run(tc.mode, tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %v: error %v, want one about %q", tc.mode, tc.args, err, tc.want)
		}
	}
	c, err := parse("chat", []string{"-proto", "centrifugo"}, io.Discard)
	if err != nil || c.proto != protoCentrifugo || c.cfSecret != cfSecret {
		t.Fatalf("chat -proto centrifugo: %+v, %v", c, err)
	}
}
