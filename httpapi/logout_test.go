package httpapi_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/imgate/imgate/httpapi"
	"github.com/imgate/imgate/storage"
)

const logoutPath = "/im/vanke/logout"

// PROTOCOL §1.5: POST /im/vanke/logout revokes the user's tokens (only
// the terminal's when given) and closes its connections (the terminal's)
// with 1008, answering {"closed":N}; an unknown user is a business failure
// (HTTP 200, code 500); the API key applies as to the other endpoints.
func TestSection1_5_Logout(t *testing.T) {
	const key = "logout-key"
	h := newHarness(t, harnessOptions{API: httpapi.Options{APIKey: key}})
	hb := &hub{closes: 2}
	h.r.SetHub(hb)
	auth := map[string]string{"Authorization": "Bearer " + key}
	post := func(path, body string) response {
		t.Helper()
		return h.do(request{method: "POST", path: path, body: body, headers: auth})
	}
	for _, b := range []struct{ terminal, token string }{
		{"pc", "agent-pc-token-0001"}, {"pc", "agent-pc-token-0002"}, {"app", "agent-app-token-001"},
	} {
		expectBody(t, post(initUserPath, userBody("agent-1", 1, ptr(b.token), "", "", b.terminal)), successNull)
	}
	uid := func() uint64 {
		u, err := h.db.UserByID("agent-1")
		if err != nil {
			t.Fatal(err)
		}
		return u.UID
	}()

	// Without the key: 401, nothing revoked or closed.
	expectError(t, h.post(logoutPath, `{"senderId":"agent-1"}`), fasthttp.StatusUnauthorized)
	h.expectTokenOwner("agent-pc-token-0001", "agent-1")

	expectBody(t, post(logoutPath, `{"senderId":"agent-1","terminal":"pc"}`), `{"code":200,"msg":"success","data":{"closed":2}}`)
	for _, tok := range []string{"agent-pc-token-0001", "agent-pc-token-0002"} {
		if _, err := h.tokenOwner(tok); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("pc token %s after a pc logout: %v", tok, err)
		}
	}
	h.expectTokenOwner("agent-app-token-001", "agent-1")

	hb.closes = 5
	expectBody(t, post(logoutPath, `{"senderId":"agent-1"}`), `{"code":200,"msg":"success","data":{"closed":5}}`)
	if _, err := h.tokenOwner("agent-app-token-001"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("app token after a full logout: %v", err)
	}
	want := []string{
		fmt.Sprintf("terminal %d pc 1008 logged out", uid),
		fmt.Sprintf("all %d 1008 logged out", uid),
	}
	if got := hb.recorded(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("disconnects %q, want %q", got, want)
	}

	// A new token after logout logs in: logout is not a ban.
	expectBody(t, post(initUserPath, userBody("agent-1", 1, ptr("agent-pc-token-0003"), "", "", "pc")), successNull)
	h.expectTokenOwner("agent-pc-token-0003", "agent-1")

	expectBody(t, post(logoutPath, `{"senderId":"nobody"}`), `{"code":500,"msg":"user not found 用户不存在","data":null}`)
	for _, tc := range []struct{ name, body, field string }{
		{"senderId missing", `{}`, "senderId"},
		{"senderId empty", `{"senderId":""}`, "senderId"},
		{"senderId malformed", `{"senderId":"a b"}`, "senderId"},
		{"senderId object", `{"senderId":{}}`, "senderId"},
		{"terminal too long", `{"senderId":"agent-1","terminal":"` + strings.Repeat("t", 33) + `"}`, "terminal"},
		{"terminal array", `{"senderId":"agent-1","terminal":[]}`, "terminal"},
	} {
		expectError(t, post(logoutPath, tc.body), fasthttp.StatusBadRequest, tc.field)
	}
	expectError(t, post(logoutPath, `not json`), fasthttp.StatusBadRequest)
	expectError(t, h.do(request{method: "GET", path: logoutPath, noBody: true, headers: auth}), fasthttp.StatusMethodNotAllowed)
	if got := hb.recorded(); len(got) != 2 {
		t.Fatalf("refused logouts disconnected: %q", got)
	}
	h.expectTokenOwner("agent-pc-token-0003", "agent-1")
}
