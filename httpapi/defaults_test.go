package httpapi_test

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/imgate/imgate/httpapi"
)

// PROTOCOL §1 as amended: POST bodies must be sent as application/json
// (parameters allowed); anything else answers 415 with the usual envelope
// and changes nothing. A web page can POST text/plain to any origin
// without a CORS preflight, and used to bind a token of its choice that
// way. An oversized body answers 413 whatever its type.
func TestSection1_PostBodyMustBeJSON(t *testing.T) {
	h := newHarness(t, harnessOptions{API: httpapi.Options{MaxBodySize: 1024}})
	paths := []string{initUserPath, "/im/vanke/getReceiver", "/im/vanke/chatInfo", "/im/vanke/logout"}
	refused := []struct{ name, contentType string }{
		{"text/plain", "text/plain"},
		{"text/plain with charset", "text/plain;charset=UTF-8"},
		{"form", "application/x-www-form-urlencoded"},
		{"multipart", "multipart/form-data; boundary=x"},
		{"json-like", "application/jsonx"},
		{"json suffix", "application/ld+json"},
		{"none", "-"},
	}
	for _, path := range paths {
		for i, tc := range refused {
			t.Run(path+" "+tc.name, func(t *testing.T) {
				id := "ct-" + strings.ReplaceAll(tc.name, " ", "-") + "-" + path[len(path)-3:]
				body := userBody(id, 0, ptr("ct-token-000000000"+string(rune('a'+i))), "", "", "")
				resp := h.do(request{method: "POST", path: path, body: body, contentType: tc.contentType})
				expectError(t, resp, fasthttp.StatusUnsupportedMediaType, "application/json")
				h.expectNoUser(id)
			})
		}
	}
	accepted := []string{"application/json", "application/json;charset=UTF-8", "Application/JSON; charset=utf-8", " application/json ; charset=utf-8"}
	for i, ct := range accepted {
		t.Run("accepted "+ct, func(t *testing.T) {
			id := "ct-ok-" + string(rune('a'+i))
			tok := "ct-ok-token-00000" + string(rune('a'+i))
			expectBody(t, h.do(request{method: "POST", path: initUserPath, body: userBody(id, 0, ptr(tok), "", "", ""), contentType: ct}), successNull)
			h.expectTokenOwner(tok, id)
		})
	}
	t.Run("413 before 415", func(t *testing.T) {
		resp := h.do(request{method: "POST", path: initUserPath, body: strings.Repeat(" ", 2048), contentType: "text/plain"})
		expectError(t, resp, fasthttp.StatusRequestEntityTooLarge)
	})
}
