package httpapi_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/imgate/imgate/storage"
)

// PROTOCOL §1.1 (ext): a client-chosen token must be 16-128 characters of
// [A-Za-z0-9_.-], else HTTP 400 naming token, and nothing is bound. "1" or
// " " used to be bound for the whole TTL.
func TestSection1_1_WeakTokenRefused(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	refused := map[string]string{
		"one digit":             "1",
		"a space":               " ",
		"15 characters":         "abcdefghijklmno",
		"129 characters":        strings.Repeat("a", 129),
		"16 with a space":       "abcdefghijklmno ",
		"with a plus":           "abcdefgh+ijklmnop",
		"with a slash":          "abcdefgh/ijklmnop",
		"with an at":            "abcdefgh@ijklmnop",
		"with a colon":          "abcdefgh:ijklmnop",
		"with a percent":        "abcdefgh%2Fijklmnop",
		"non-ASCII letters":     "токентокентокенток",
		"16 bytes of 8 letters": "éééééééé",
	}
	for name, tok := range refused {
		t.Run("refused "+name, func(t *testing.T) {
			for _, path := range []string{initUserPath, "/im/vanke/getReceiver"} {
				resp := h.post(path, userBody("weak-user", 0, ptr(tok), "Nick", "", "pc"))
				expectError(t, resp, fasthttp.StatusBadRequest, "token")
				if _, err := h.tokenOwner(tok); !errors.Is(err, storage.ErrNotFound) {
					t.Fatalf("%s: refused token %q resolves: %v", path, tok, err)
				}
				h.expectNoUser("weak-user")
			}
		})
	}
	accepted := map[string]string{
		"16 characters":       "abcdefghijklmnop",
		"128 characters":      strings.Repeat("Z", 128),
		"every allowed class": "Az09_.-Az09_.-Az09",
		"32 hex, as minted":   "0123456789abcdef0123456789abcdef",
	}
	for name, tok := range accepted {
		t.Run("accepted "+name, func(t *testing.T) {
			expectBody(t, h.initUser(userBody("strong-user", 0, ptr(tok), "", "", "")), successNull)
			h.expectTokenOwner(tok, "strong-user")
		})
	}
}

// PROTOCOL §1.1 (ext) field limits: nick ≤ 256 characters, avatar ≤ 4 096
// bytes, sign ≤ 1 024 bytes, terminal ≤ 32 bytes; else 400 naming the field.
func TestSection1_1_FieldLimits(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	body := func(field, v string) string {
		return `{"senderId":"limits","type":1,"token":"limits-token-000001","` + field + `":"` + v + `"}`
	}
	cases := []struct {
		field   string
		atLimit string
		over    string
	}{
		{"nick", strings.Repeat("好", 256), strings.Repeat("好", 257)},
		{"nick", strings.Repeat("n", 256), strings.Repeat("n", 257)},
		{"avatar", strings.Repeat("a", 4096), strings.Repeat("a", 4097)},
		{"sign", strings.Repeat("s", 1024), strings.Repeat("s", 1025)},
		{"sign", strings.Repeat("好", 341), strings.Repeat("好", 342)}, // 1 023 and 1 026 bytes
		{"terminal", strings.Repeat("t", 32), strings.Repeat("t", 33)},
	}
	for _, tc := range cases {
		t.Run(tc.field+" "+tc.over[:3], func(t *testing.T) {
			expectBody(t, h.initUser(body(tc.field, tc.atLimit)), successNull)
			u, err := h.db.UserByID("limits")
			if err != nil {
				t.Fatal(err)
			}
			if got := map[string]string{"nick": u.Nick, "avatar": u.Avatar, "sign": u.Sign, "terminal": u.Terminal}[tc.field]; got != tc.atLimit {
				t.Fatalf("stored %s has %d bytes, want %d", tc.field, len(got), len(tc.atLimit))
			}
			expectError(t, h.initUser(body(tc.field, tc.over)), fasthttp.StatusBadRequest, tc.field)
		})
	}
}

// PROTOCOL §1.1 (ext): a refused request changes nothing: no token bound,
// no profile field written, no contact made.
func TestSection1_1_RefusedRequestChangesNothing(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	const good = "agent-good-token-01"
	expectBody(t, h.initUser(`{"senderId":"agent-1","type":1,"token":"`+good+`","nick":"Cai","avatar":"c.png","terminal":"pc","sign":"on duty"}`), successNull)
	expectBody(t, h.initUser(`{"senderId":"visitor-1","type":0,"token":"visitor-token-0001"}`), successNull)
	before, err := h.db.UserByID("agent-1")
	if err != nil {
		t.Fatal(err)
	}
	const fresh = "agent-fresh-token-1"
	long := strings.Repeat("x", 5000)
	cases := []struct{ name, field, body string }{
		{"weak token", "token", `{"token":"1"`},
		{"long nick", "nick", `{"token":"` + fresh + `","nick":"` + long + `"`},
		{"long avatar", "avatar", `{"token":"` + fresh + `","avatar":"` + long + `"`},
		{"long sign", "sign", `{"token":"` + fresh + `","sign":"` + long + `"`},
		{"long terminal", "terminal", `{"token":"` + fresh + `","terminal":"` + long + `"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Every other field is valid and different from the stored one.
			rest := `,"senderId":"agent-1","type":2,"receiverId":"visitor-1"`
			for _, f := range []string{"nick", "avatar", "sign", "terminal"} {
				if f != tc.field {
					rest += `,"` + f + `":"new-` + f + `"`
				}
			}
			for _, path := range []string{initUserPath, "/im/vanke/getReceiver"} {
				expectError(t, h.post(path, tc.body+rest+"}"), fasthttp.StatusBadRequest, tc.field)
				after, err := h.db.UserByID("agent-1")
				if err != nil || after != before {
					t.Fatalf("%s: profile after a refused request = %+v, %v; want %+v", path, after, err, before)
				}
				if _, err := h.tokenOwner(fresh); !errors.Is(err, storage.ErrNotFound) {
					t.Fatalf("%s: the token of a refused request resolves: %v", path, err)
				}
				h.expectTokenOwner(good, "agent-1")
				contacts := 0
				if err := h.db.Contacts(before.UID, func(storage.Contact) bool { contacts++; return true }); err != nil || contacts != 0 {
					t.Fatalf("%s: agent-1 has %d contacts (%v) after refused requests", path, contacts, err)
				}
			}
		})
	}
}
