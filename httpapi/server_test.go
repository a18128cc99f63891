package httpapi_test

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/imgate/imgate/httpapi"
	"github.com/imgate/imgate/storage"
)

// Bodies the contract fixes byte for byte (PROTOCOL §1, §1.1).
const (
	successNull = `{"code":200,"msg":"success","data":null}`
	loginFailed = `{"code":500,"msg":"登录IM系统失败!","data":null}`
)

// generatedData matches the ext data of §1.1 for an empty token.
var generatedData = regexp.MustCompile(`^\{"code":200,"msg":"success","data":\{"token":"([0-9a-f]{32})","expireAt":([0-9]+)\}\}$`)

// profile is the part of storage.User that initUser sets.
type profile struct {
	ID, Nick, Avatar, Terminal, Sign string
	Type                             int
}

func profileOf(u storage.User) profile {
	return profile{ID: u.ID, Type: u.Type, Nick: u.Nick, Avatar: u.Avatar, Terminal: u.Terminal, Sign: u.Sign}
}

func TestInitUser_Section1_1_SuppliedTokenBindsAndRefreshesProfile(t *testing.T) {
	const ttl = time.Hour
	h := newHarness(t, harnessOptions{TokenTTL: ttl})
	const token = "tok-visitor-1-long"

	steps := []struct {
		name    string
		advance time.Duration
		body    string
		want    profile
	}{
		{
			name: "first registration",
			body: `{"senderId":"visitor-1","token":"tok-visitor-1-long","type":0,"nick":"Ann","avatar":"https://img.example/a.png","terminal":"h5","sign":"hello","receiverId":""}`,
			want: profile{ID: "visitor-1", Type: 0, Nick: "Ann", Avatar: "https://img.example/a.png", Terminal: "h5", Sign: "hello"},
		},
		{
			name:    "second call refreshes nick avatar terminal (fix)",
			advance: 40 * time.Minute,
			body:    `{"senderId":"visitor-1","token":"tok-visitor-1-long","type":0,"nick":"Ann B.","avatar":"https://img.example/b.png","terminal":"app","sign":"bye"}`,
			want:    profile{ID: "visitor-1", Type: 0, Nick: "Ann B.", Avatar: "https://img.example/b.png", Terminal: "app", Sign: "bye"},
		},
		{
			name:    "third call with a new type",
			advance: 40 * time.Minute,
			body:    `{"senderId":"visitor-1","token":"tok-visitor-1-long","type":2,"nick":"Ann C.","avatar":"","terminal":"pc"}`,
			want:    profile{ID: "visitor-1", Type: 2, Nick: "Ann C.", Terminal: "pc"},
		},
	}
	var first storage.User
	for i, st := range steps {
		h.clock.Advance(st.advance)
		resp := h.initUser(st.body)
		expectBody(t, resp, successNull)
		if ct := resp.get("Content-Type"); !strings.Contains(strings.ToLower(ct), "charset=utf-8") {
			t.Errorf("%s: Content-Type = %q, want a UTF-8 JSON type", st.name, ct)
		}
		// Each call binds the token for a full TTL from now: 40 minutes
		// after the second call the first expiry has passed, yet the token
		// still resolves.
		h.expectTokenOwner(token, "visitor-1")
		u, err := h.db.UserByID("visitor-1")
		if err != nil {
			t.Fatalf("%s: UserByID: %v", st.name, err)
		}
		if got := profileOf(u); got != st.want {
			t.Errorf("%s: stored profile = %+v, want %+v", st.name, got, st.want)
		}
		if u.Updated != h.clock.Millis() {
			t.Errorf("%s: Updated = %d, want %d", st.name, u.Updated, h.clock.Millis())
		}
		if i == 0 {
			first = u
			if u.Created != testEpoch {
				t.Errorf("Created = %d, want %d", u.Created, testEpoch)
			}
			continue
		}
		if u.UID != first.UID || u.Created != first.Created {
			t.Errorf("%s: UID/Created = %d/%d, want the first registration's %d/%d", st.name, u.UID, u.Created, first.UID, first.Created)
		}
	}
	if tu, err := h.db.TokenUser(token, h.clock.Millis()); err != nil || tu.UID != first.UID {
		t.Fatalf("TokenUser = %+v, %v; want uid %d", tu, err, first.UID)
	}
	// The last binding lasts exactly one TTL from the last call.
	h.clock.Advance(ttl)
	if _, err := h.tokenOwner(token); !errors.Is(err, storage.ErrTokenExpired) {
		t.Fatalf("token one TTL after the last call: err = %v, want ErrTokenExpired", err)
	}
}

func TestInitUser_Section1_1_EmptyTokenGeneratesOne(t *testing.T) {
	const ttl = 90 * time.Minute
	cases := []struct {
		name string
		body string
	}{
		{"token absent", `{"senderId":"agent-7","type":1,"nick":"Bo"}`},
		{"token empty", `{"senderId":"agent-7","type":1,"nick":"Bo","token":""}`},
		{"token null", `{"senderId":"agent-7","type":1,"nick":"Bo","token":null}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{TokenTTL: ttl})
			h.clock.Advance(1234 * time.Millisecond)
			now := h.clock.Millis()

			resp := h.initUser(tc.body)
			if resp.status != fasthttp.StatusOK {
				t.Fatalf("status = %d, want 200 (body %s)", resp.status, resp.body)
			}
			expectJSON(t, resp)
			m := generatedData.FindStringSubmatch(resp.body)
			if m == nil {
				t.Fatalf("body = %s, want data {\"token\":<32 hex>,\"expireAt\":ms}", resp.body)
			}
			token := m[1]
			wantExpire := now + ttl.Milliseconds()
			want := `{"code":200,"msg":"success","data":{"token":"` + token + `","expireAt":` + strconv.FormatInt(wantExpire, 10) + `}}`
			if resp.body != want {
				t.Fatalf("body = %s\nwant   %s", resp.body, want)
			}
			h.expectTokenOwner(token, "agent-7")
			u, err := h.db.UserByID("agent-7")
			if err != nil {
				t.Fatalf("UserByID: %v", err)
			}
			if got, want := profileOf(u), (profile{ID: "agent-7", Type: 1, Nick: "Bo"}); got != want {
				t.Errorf("profile = %+v, want %+v", got, want)
			}

			// A second call generates a different token; both stay bound.
			resp = h.initUser(tc.body)
			m2 := generatedData.FindStringSubmatch(resp.body)
			if m2 == nil {
				t.Fatalf("second body = %s", resp.body)
			}
			if m2[1] == token {
				t.Fatalf("second call generated the same token %s", token)
			}
			h.expectTokenOwner(m2[1], "agent-7")
			h.expectTokenOwner(token, "agent-7")

			// The token is stored with the expiry the response announced.
			h.clock.Advance(time.Duration(wantExpire-1-h.clock.Millis()) * time.Millisecond)
			h.expectTokenOwner(token, "agent-7")
			h.clock.Advance(time.Millisecond)
			if _, err := h.tokenOwner(token); !errors.Is(err, storage.ErrTokenExpired) {
				t.Fatalf("token at expireAt: err = %v, want ErrTokenExpired", err)
			}
		})
	}
}

func TestInitUser_Section1_MalformedInputAnswers400(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	long := strings.Repeat("x", 1025)
	cases := []struct {
		name  string
		body  string
		field string // the field the msg must name; "" when there is none
		user  string // a user id that must not have been registered
	}{
		{name: "senderId missing", body: `{"type":0,"token":"t-missing-padded-token"}`, field: "senderId"},
		{name: "senderId empty", body: `{"senderId":"","type":0}`, field: "senderId"},
		{name: "senderId null", body: `{"senderId":null,"type":0}`, field: "senderId"},
		{name: "senderId with a space", body: `{"senderId":"bad id","type":0}`, field: "senderId", user: "bad id"},
		{name: "senderId with a slash", body: `{"senderId":"a/b","type":0}`, field: "senderId", user: "a/b"},
		{name: "senderId 65 bytes", body: `{"senderId":"` + strings.Repeat("a", 65) + `","type":0}`, field: "senderId", user: strings.Repeat("a", 65)},
		{name: "senderId object", body: `{"senderId":{},"type":0}`, field: "senderId"},
		{name: "senderId array", body: `{"senderId":["u1"],"type":0}`, field: "senderId"},
		{name: "type missing", body: `{"senderId":"no-type"}`, field: "type", user: "no-type"},
		{name: "type null", body: `{"senderId":"null-type","type":null}`, field: "type", user: "null-type"},
		{name: "type 7", body: `{"senderId":"type-7","type":7}`, field: "type", user: "type-7"},
		{name: "type -1", body: `{"senderId":"type-neg","type":-1}`, field: "type", user: "type-neg"},
		{name: "type string 7", body: `{"senderId":"type-s7","type":"7"}`, field: "type", user: "type-s7"},
		{name: "type 1.5", body: `{"senderId":"type-frac","type":1.5}`, field: "type", user: "type-frac"},
		{name: "type non-numeric string", body: `{"senderId":"type-abc","type":"abc"}`, field: "type", user: "type-abc"},
		{name: "type object", body: `{"senderId":"type-obj","type":{}}`, field: "type", user: "type-obj"},
		{name: "type array", body: `{"senderId":"type-arr","type":[1]}`, field: "type", user: "type-arr"},
		{name: "type bool", body: `{"senderId":"type-bool","type":true}`, field: "type", user: "type-bool"},
		{name: "nick too long", body: `{"senderId":"long-nick","type":0,"nick":"` + long + `"}`, field: "nick", user: "long-nick"},
		{name: "token too long", body: `{"senderId":"long-token","type":0,"token":"` + long + `"}`, field: "token", user: "long-token"},
		{name: "nick object", body: `{"senderId":"nick-obj","type":0,"nick":{"a":1}}`, field: "nick", user: "nick-obj"},
		{name: "body array", body: `[]`},
		{name: "body array of object", body: `[{"senderId":"in-array","type":0}]`, user: "in-array"},
		{name: "body not json", body: `not json`},
		{name: "body empty", body: ``},
		{name: "body whitespace", body: " \r\n\t "},
		{name: "body string", body: `"senderId"`},
		{name: "body null", body: `null`},
		{name: "body truncated", body: `{"senderId":"trunc","type":0`, user: "trunc"},
		{name: "body trailing garbage", body: `{"senderId":"trail","type":0} x`, user: "trail"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.initUser(tc.body)
			if tc.field != "" {
				expectError(t, resp, fasthttp.StatusBadRequest, tc.field)
			} else {
				expectError(t, resp, fasthttp.StatusBadRequest)
			}
			if tc.user != "" {
				h.expectNoUser(tc.user)
			}
		})
	}
}

func TestInitUser_Section0_LenientInputAccepted(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	cases := []struct {
		name string
		body string
		want profile
	}{
		{name: "type as string 1", body: `{"senderId":"str-type","type":"1","token":"t-str-type-padded-token"}`, want: profile{ID: "str-type", Type: 1}},
		{name: "type as string 0", body: `{"senderId":"str-type0","type":"0","token":"t-str-type0-padded-token"}`, want: profile{ID: "str-type0", Type: 0}},
		{name: "type 2", body: `{"senderId":"num-type","type":2,"token":"t-num-type-padded-token"}`, want: profile{ID: "num-type", Type: 2}},
		{name: "senderId as number", body: `{"senderId":12345,"type":0,"token":"t-12345-padded-token"}`, want: profile{ID: "12345", Type: 0}},
		{name: "senderId 64 bytes of every allowed class", body: `{"senderId":"` + strings.Repeat("aZ9_.@:-", 8) + `","type":0,"token":"t-64-padded-token"}`, want: profile{ID: strings.Repeat("aZ9_.@:-", 8), Type: 0}},
		{name: "unknown fields ignored", body: `{"senderId":"extra","type":0,"token":"t-extra-padded-token","foo":{"bar":[1,2]},"groupId":"g"}`, want: profile{ID: "extra", Type: 0}},
		{name: "unicode nick", body: `{"senderId":"uni","type":0,"token":"t-uni-padded-token","nick":"小明 \"Ming\""}`, want: profile{ID: "uni", Type: 0, Nick: `小明 "Ming"`}},
		{name: "receiverId not registered", body: `{"senderId":"lonely","type":0,"token":"t-lonely-padded-token","receiverId":"nobody"}`, want: profile{ID: "lonely", Type: 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			expectBody(t, h.initUser(tc.body), successNull)
			u, err := h.db.UserByID(tc.want.ID)
			if err != nil {
				t.Fatalf("UserByID(%q): %v", tc.want.ID, err)
			}
			if got := profileOf(u); got != tc.want {
				t.Errorf("profile = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestInitUser_Section1_1_TokenOfAnotherUserRefused(t *testing.T) {
	const ttl = time.Hour
	cases := []struct {
		name    string
		advance time.Duration // between the two calls
		second  string        // sender of the second call
		refused bool
	}{
		{name: "other user while bound", second: "visitor-2", refused: true},
		{name: "other user 1ms before expiry", advance: ttl - time.Millisecond, second: "visitor-2", refused: true},
		{name: "other user at expiry", advance: ttl, second: "visitor-2"},
		{name: "other user past expiry", advance: ttl + time.Millisecond, second: "visitor-2"},
		{name: "same user rebinds its own token", second: "visitor-1"},
		{name: "same user rebinds after expiry", advance: 2 * ttl, second: "visitor-1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{TokenTTL: ttl})
			const token = "shared-token-0001"
			expectBody(t, h.initUser(userBody("visitor-1", 0, ptr(token), "First", "a1.png", "pc")), successNull)
			h.clock.Advance(tc.advance)

			resp := h.initUser(userBody(tc.second, 0, ptr(token), "Second", "a2.png", "app"))
			if tc.refused {
				expectBody(t, resp, loginFailed)
				h.expectTokenOwner(token, "visitor-1")
				u, err := h.db.UserByID("visitor-1")
				if err != nil {
					t.Fatalf("UserByID: %v", err)
				}
				if want := (profile{ID: "visitor-1", Nick: "First", Avatar: "a1.png", Terminal: "pc"}); profileOf(u) != want {
					t.Errorf("first user's profile = %+v, want %+v", profileOf(u), want)
				}
				// Refusal is stable: a retry is refused too.
				expectBody(t, h.initUser(userBody(tc.second, 0, ptr(token), "Second", "a2.png", "app")), loginFailed)
				return
			}
			expectBody(t, resp, successNull)
			h.expectTokenOwner(token, tc.second)
			u, err := h.db.UserByID(tc.second)
			if err != nil {
				t.Fatalf("UserByID: %v", err)
			}
			if want := (profile{ID: tc.second, Nick: "Second", Avatar: "a2.png", Terminal: "app"}); profileOf(u) != want {
				t.Errorf("profile = %+v, want %+v", profileOf(u), want)
			}
			// The token now belongs to the second caller: the first user
			// (if another) cannot take it back.
			if tc.second != "visitor-1" {
				expectBody(t, h.initUser(userBody("visitor-1", 0, ptr(token), "First", "a1.png", "pc")), loginFailed)
				h.expectTokenOwner(token, tc.second)
			}
		})
	}
}

func TestAPI_Section1_APIKey(t *testing.T) {
	const key = "s3cret-key"
	h := newHarness(t, harnessOptions{API: httpapi.Options{APIKey: key}})
	cases := []struct {
		name   string
		method string
		path   string
		auth   string // Authorization header; "" sends none
		status int
	}{
		{name: "initUser without Authorization", method: "POST", path: initUserPath, status: 401},
		{name: "initUser wrong key", method: "POST", path: initUserPath, auth: "Bearer wrong-key", status: 401},
		{name: "initUser key prefix", method: "POST", path: initUserPath, auth: "Bearer s3cret", status: 401},
		{name: "initUser key plus suffix", method: "POST", path: initUserPath, auth: "Bearer s3cret-key2", status: 401},
		{name: "initUser key without Bearer", method: "POST", path: initUserPath, auth: key, status: 401},
		{name: "initUser Basic scheme", method: "POST", path: initUserPath, auth: "Basic " + key, status: 401},
		{name: "initUser Bearer empty", method: "POST", path: initUserPath, auth: "Bearer ", status: 401},
		{name: "initUser right key", method: "POST", path: initUserPath, auth: "Bearer " + key, status: 200},
		{name: "healthz without key", method: "GET", path: "/healthz", status: 200},
		{name: "metrics without key", method: "GET", path: "/metrics", status: 200},
		{name: "healthz with a wrong key", method: "GET", path: "/healthz", auth: "Bearer nope", status: 200},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("key-user-%d", i)
			req := request{method: tc.method, path: tc.path, headers: map[string]string{}}
			if tc.method == "POST" {
				req.body = userBody(id, 0, ptr("tok-"+id+"-padded"), "", "", "")
			} else {
				req.noBody = true
			}
			if tc.auth != "" {
				req.headers["Authorization"] = tc.auth
			}
			resp := h.do(req)
			switch {
			case tc.status == 401:
				expectError(t, resp, 401)
				h.expectNoUser(id)
			case tc.path == initUserPath:
				expectBody(t, resp, successNull)
				h.expectTokenOwner("tok-"+id+"-padded", id)
			default:
				if resp.status != tc.status {
					t.Fatalf("status = %d, want %d (body %s)", resp.status, tc.status, resp.body)
				}
			}
		})
	}
}

func TestAPI_Section1_UnknownPathAnswers404(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	cases := []struct {
		name   string
		method string
		path   string
	}{
		{"root", "GET", "/"},
		{"unknown POST", "POST", "/im/vanke/nope"},
		{"initUser with a suffix", "POST", "/im/vanke/initUserX"},
		{"initUser with a trailing slash", "POST", "/im/vanke/initUser/"},
		{"healthz subpath", "GET", "/healthz/extra"},
		{"OPTIONS on unknown path", "OPTIONS", "/nope"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.do(request{method: tc.method, path: tc.path, body: `{"senderId":"u404","type":0}`})
			expectError(t, resp, fasthttp.StatusNotFound)
			h.expectNoUser("u404")
		})
	}
}

func TestAPI_Section1_WrongMethodAnswers405(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	cases := []struct {
		method, path, allow string
	}{
		{"GET", initUserPath, "POST"},
		{"PUT", initUserPath, "POST"},
		{"DELETE", initUserPath, "POST"},
		{"PATCH", initUserPath, "POST"},
		{"POST", "/healthz", "GET"},
		{"POST", "/metrics", "GET"},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req := request{method: tc.method, path: tc.path, body: `{"senderId":"u405","type":0,"token":"t405"}`}
			if tc.method == "GET" || tc.method == "DELETE" {
				req.noBody = true
			}
			resp := h.do(req)
			expectError(t, resp, fasthttp.StatusMethodNotAllowed)
			allow := resp.get("Allow")
			if !containsToken(allow, tc.allow) {
				t.Errorf("Allow = %q, want it to list %s", allow, tc.allow)
			}
			if containsToken(allow, tc.method) {
				t.Errorf("Allow = %q lists the refused method %s", allow, tc.method)
			}
			h.expectNoUser("u405")
		})
	}
}

// containsToken reports whether the comma-separated list has tok.
func containsToken(list, tok string) bool {
	for v := range strings.SplitSeq(list, ",") {
		if strings.EqualFold(strings.TrimSpace(v), tok) {
			return true
		}
	}
	return false
}

func TestAPI_Section1_BodyTooLargeAnswers413(t *testing.T) {
	const limit = 1024
	h := newHarness(t, harnessOptions{API: httpapi.Options{MaxBodySize: limit}})
	// padded is a valid initUser body of exactly n bytes.
	padded := func(id string, n int) string {
		head := `{"senderId":"` + id + `","type":0,"token":"t-` + id + `-padded-token"`
		return head + strings.Repeat(" ", n-len(head)-1) + "}"
	}
	cases := []struct {
		name   string
		id     string
		size   int
		status int
	}{
		{"4096 bytes", "big", 4096, fasthttp.StatusRequestEntityTooLarge},
		{"one byte over", "over", limit + 1, fasthttp.StatusRequestEntityTooLarge},
		{"exactly the limit", "fits", limit, fasthttp.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := padded(tc.id, tc.size)
			if len(body) != tc.size {
				t.Fatalf("test body is %d bytes, want %d", len(body), tc.size)
			}
			resp := h.initUser(body)
			if tc.status == fasthttp.StatusOK {
				expectBody(t, resp, successNull)
				h.expectTokenOwner("t-"+tc.id+"-padded-token", tc.id)
				return
			}
			expectError(t, resp, tc.status)
			if got, ok := resp.header["access-control-allow-origin"]; ok {
				t.Errorf("Access-Control-Allow-Origin = %q, want none (CORS is off by default)", got)
			}
			h.expectNoUser(tc.id)
		})
	}
	// The server still answers after refusing a body.
	expectBody(t, h.initUser(padded("after", 100)), successNull)
}

// PROTOCOL §1 as amended: CORS is off unless an origin is configured — no
// CORS header at all by default (it used to be "*", which let any page
// bind tokens through a visitor's browser); preflights answer 204 either
// way.
func TestSection1_CORSOffUnlessConfigured(t *testing.T) {
	const key = "cors-key"
	cases := []struct {
		name       string
		origin     string // Options.AllowOrigin
		wantOrigin string // "": no CORS headers at all
	}{
		{name: "default: no CORS", origin: httpapi.DefaultAllowOrigin, wantOrigin: ""},
		{name: "configured origin", origin: "https://crm.example.com", wantOrigin: "https://crm.example.com"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{API: httpapi.Options{AllowOrigin: tc.origin, APIKey: key, MaxBodySize: 1024}})

			// Preflight: browsers send no credentials on it.
			pre := h.do(request{method: "OPTIONS", path: initUserPath, noBody: true, headers: map[string]string{
				"Origin":                         "https://crm.example.com",
				"Access-Control-Request-Method":  "POST",
				"Access-Control-Request-Headers": "content-type, authorization",
			}})
			if pre.status != fasthttp.StatusNoContent {
				t.Fatalf("preflight status = %d, want 204 (body %q)", pre.status, pre.body)
			}
			if pre.body != "" {
				t.Errorf("preflight body = %q, want none", pre.body)
			}
			if got := pre.get("Access-Control-Allow-Origin"); got != tc.wantOrigin {
				t.Errorf("preflight Access-Control-Allow-Origin = %q, want %q", got, tc.wantOrigin)
			}
			if tc.wantOrigin == "" {
				for name := range pre.header {
					if strings.HasPrefix(name, "access-control-") {
						t.Errorf("preflight has %s with CORS off", name)
					}
				}
			} else if got := pre.get("Access-Control-Allow-Methods"); !containsToken(got, "POST") {
				t.Errorf("preflight Access-Control-Allow-Methods = %q, want POST", got)
			}
			h.expectNoUser("cors-user")

			auth := map[string]string{"Authorization": "Bearer " + key}
			expectBody(t, h.do(request{method: "POST", path: initUserPath, headers: auth,
				body: userBody("cors-owner", 0, ptr("cors-token-0000001"), "", "", "")}), successNull)

			every := []struct {
				name   string
				req    request
				status int
			}{
				{"initUser 200", request{method: "POST", path: initUserPath, headers: auth, body: userBody("cors-user", 1, nil, "", "", "")}, 200},
				{"initUser business failure", request{method: "POST", path: initUserPath, headers: auth, body: userBody("cors-thief", 1, ptr("cors-token-0000001"), "", "", "")}, 200},
				{"initUser 400", request{method: "POST", path: initUserPath, headers: auth, body: `{}`}, 400},
				{"initUser 401", request{method: "POST", path: initUserPath, body: `{}`}, 401},
				{"initUser 405", request{method: "GET", path: initUserPath, headers: auth, noBody: true}, 405},
				{"initUser 413", request{method: "POST", path: initUserPath, headers: auth, body: strings.Repeat(" ", 2048)}, 413},
				{"unknown 404", request{method: "GET", path: "/nope", headers: auth, noBody: true}, 404},
				{"healthz", request{method: "GET", path: "/healthz", noBody: true}, 200},
				{"metrics", request{method: "GET", path: "/metrics", noBody: true}, 200},
			}
			for _, e := range every {
				resp := h.do(e.req)
				if resp.status != e.status {
					t.Errorf("%s: status = %d, want %d (body %q)", e.name, resp.status, e.status, resp.body)
				}
				if got, ok := resp.header["access-control-allow-origin"]; got != tc.wantOrigin || ok != (tc.wantOrigin != "") {
					t.Errorf("%s: Access-Control-Allow-Origin = %q (present %v), want %q", e.name, got, ok, tc.wantOrigin)
				}
			}
		})
	}
}

func TestHealthz_Section1_4(t *testing.T) {
	cases := []struct {
		name    string
		ready   func() error
		closeDB bool
		status  int
	}{
		{name: "store open", status: 200},
		{name: "store open and listeners ready", ready: func() error { return nil }, status: 200},
		{name: "listeners not ready", ready: func() error { return errors.New("ws listener down") }, status: 503},
		{name: "store closed", closeDB: true, status: 503},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{API: httpapi.Options{Ready: tc.ready}})
			if tc.closeDB {
				// Before closing, the same server answers 200.
				if resp := h.do(request{method: "GET", path: "/healthz", noBody: true}); resp.status != 200 {
					t.Fatalf("healthz before close: status = %d, want 200 (body %s)", resp.status, resp.body)
				}
				closeRouter(t, h.r)
				if err := h.db.Close(); err != nil {
					t.Fatalf("db.Close: %v", err)
				}
			}
			resp := h.do(request{method: "GET", path: "/healthz", noBody: true})
			if tc.status != 200 {
				expectError(t, resp, tc.status)
				return
			}
			if resp.status != 200 {
				t.Fatalf("status = %d, want 200 (body %s)", resp.status, resp.body)
			}
			expectJSON(t, resp)
			if e := decodeEnvelope(t, resp.body); *e.Code != 200 {
				t.Errorf("envelope code = %d, want 200 (body %s)", *e.Code, resp.body)
			}
		})
	}
}

func TestMetrics_Section1_4(t *testing.T) {
	h := newHarness(t, harnessOptions{API: httpapi.Options{
		Metrics: func(dst []byte) []byte { return append(dst, "imgate_ws_connections 3\n"...) },
	}})
	scrape := func() string {
		t.Helper()
		resp := h.do(request{method: "GET", path: "/metrics", noBody: true})
		if resp.status != 200 {
			t.Fatalf("status = %d, want 200 (body %s)", resp.status, resp.body)
		}
		if ct := resp.get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("Content-Type = %q, want text/plain", ct)
		}
		return resp.body
	}
	before := scrape()
	for _, want := range []string{
		"# TYPE imgate_http_requests_total counter\n",
		"\nimgate_ws_connections 3\n",
	} {
		if !strings.Contains(before, want) {
			t.Errorf("metrics lack %q:\n%s", want, before)
		}
	}
	n0 := counterValue(t, before, "imgate_http_requests_total")
	const calls = 3
	for i := range calls {
		expectBody(t, h.initUser(userBody(fmt.Sprintf("m-%d", i), 0, ptr(fmt.Sprintf("m-token-padded-%d", i)), "", "", "")), successNull)
	}
	if n1 := counterValue(t, scrape(), "imgate_http_requests_total"); n1 < n0+calls {
		t.Errorf("imgate_http_requests_total = %d after %d requests, want at least %d", n1, calls, n0+calls)
	}
}

func TestInitUser_Section1_1_ConcurrentRegistrationsOneTokenOneWinner(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	const (
		users      = 50
		contenders = 20
		// rounds repeats the contest on fresh tokens: a lost race shows
		// up only when two requests overlap, so more rounds catch more.
		rounds = 5
	)
	// Open the connections first, so that the bursts below do not queue
	// behind the listener's Accept and the requests really overlap.
	burst(t, h, make([]registration, users+contenders), func(int, registration) request {
		return request{method: "GET", path: "/healthz", noBody: true}
	})

	uids := map[uint64]string{}
	for round := range rounds {
		shared := fmt.Sprintf("contested-token-%d", round)
		var regs []registration
		if round == 0 {
			for i := range users {
				id := fmt.Sprintf("user-%02d", i)
				regs = append(regs, registration{id: id, token: "own-token-" + id, typ: i % 3})
			}
		}
		for i := range contenders {
			regs = append(regs, registration{id: fmt.Sprintf("contender-%02d", i), token: shared, typ: i % 3})
		}
		results := burst(t, h, regs, func(_ int, r registration) request {
			return request{method: "POST", path: initUserPath, body: userBody(r.id, r.typ, ptr(r.token), "n-"+r.id, "", "")}
		})

		var winners []string
		for i, reg := range regs {
			resp := results[i]
			if reg.token == shared {
				if resp.body == successNull {
					winners = append(winners, reg.id)
				} else {
					expectBody(t, resp, loginFailed)
				}
				continue
			}
			expectBody(t, resp, successNull)
			h.expectTokenOwner(reg.token, reg.id)
			u, err := h.db.UserByID(reg.id)
			if err != nil {
				t.Fatalf("UserByID(%s): %v", reg.id, err)
			}
			if want := (profile{ID: reg.id, Type: reg.typ, Nick: "n-" + reg.id}); profileOf(u) != want {
				t.Errorf("profile = %+v, want %+v", profileOf(u), want)
			}
			if other, dup := uids[u.UID]; dup {
				t.Errorf("users %s and %s share uid %d", other, reg.id, u.UID)
			}
			uids[u.UID] = reg.id
		}
		if len(winners) != 1 {
			t.Fatalf("round %d: %d contenders bound the token (%v), want exactly 1", round, len(winners), winners)
		}
		h.expectTokenOwner(shared, winners[0])
		w, err := h.db.UserByID(winners[0])
		if err != nil {
			t.Fatalf("winner UserByID: %v", err)
		}
		if other, dup := uids[w.UID]; dup && other != w.ID {
			t.Errorf("winner %s shares uid %d with %s", w.ID, w.UID, other)
		}
		uids[w.UID] = w.ID
	}
}

// registration is one initUser call of a concurrent burst.
type registration struct {
	id, token string
	typ       int
}

// burst sends one request per registration, all at once, and returns the
// responses in order.
func burst(t testing.TB, h *harness, regs []registration, mk func(int, registration) request) []response {
	t.Helper()
	results := make([]response, len(regs))
	errs := make([]error, len(regs))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, r := range regs {
		req := mk(i, r)
		wg.Go(func() {
			<-start
			results[i], errs[i] = h.tryDo(req)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("request %d (%s): %v", i, regs[i].id, err)
		}
	}
	return results
}

func TestInitUser_Section1_1_BindingSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, harnessOptions{Dir: dir})
	const token = "durable-token-0001"
	expectBody(t, h.initUser(`{"senderId":"agent-1","token":"durable-token-0001","type":1,"nick":"Cai","avatar":"c.png","terminal":"pc","sign":"on duty"}`), successNull)
	before, err := h.db.UserByID("agent-1")
	if err != nil {
		t.Fatalf("UserByID: %v", err)
	}
	closeRouter(t, h.r)
	if err := h.db.Close(); err != nil {
		t.Fatalf("db.Close: %v", err)
	}

	h2 := newHarness(t, harnessOptions{Dir: dir})
	after, err := h2.db.UserByID("agent-1")
	if err != nil {
		t.Fatalf("UserByID after restart: %v", err)
	}
	if after != before {
		t.Fatalf("user after restart = %+v, want %+v", after, before)
	}
	h2.expectTokenOwner(token, "agent-1")

	// The binding is enforced after the restart, and a user registered
	// after it gets a new uid instead of overwriting an old one.
	expectBody(t, h2.initUser(userBody("visitor-9", 0, ptr(token), "Thief", "", "")), loginFailed)
	expectBody(t, h2.initUser(userBody("visitor-9", 0, ptr("visitor-9-token-01"), "Nine", "", "")), successNull)
	nine, err := h2.db.UserByID("visitor-9")
	if err != nil {
		t.Fatalf("UserByID(visitor-9): %v", err)
	}
	if nine.UID == before.UID {
		t.Fatalf("new user reused uid %d of agent-1", nine.UID)
	}
	h2.expectTokenOwner(token, "agent-1")
	h2.expectTokenOwner("visitor-9-token-01", "visitor-9")
	if again, err := h2.db.UserByID("agent-1"); err != nil || again != before {
		t.Fatalf("agent-1 after a new registration = %+v, %v; want %+v", again, err, before)
	}
}
