package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/valyala/fasthttp"
)

// PROTOCOL §1: a body over the limit answers 413, and the client reads that
// answer. A 1 MiB body sent with Content-Length by Go's net/http client (no
// Expect: 100-continue) over TCP is still arriving when the server refuses
// it after the headers; closing then, with unread bytes, resets the
// connection and the client saw "broken pipe" in 14-18 of 40 attempts. The
// server closes lingering, so every attempt reads the 413.
func TestSection1_OversizedBodyAnswers413TheClientReads(t *testing.T) {
	h := newHarness(t, harnessOptions{}) // the default limit, 64 KiB
	base := h.serveTCP()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: waitBound()}
	body := bytes.Repeat([]byte(" "), 1<<20)
	const attempts = 40
	got := map[string]int{}
	for range attempts {
		req, err := http.NewRequest(http.MethodPost, base+initUserPath, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			got[err.Error()]++
			continue
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		var env struct{ Code int }
		switch {
		case err != nil:
			got["reading the answer: "+err.Error()]++
		case resp.StatusCode != fasthttp.StatusRequestEntityTooLarge || json.Unmarshal(b, &env) != nil || env.Code != 413:
			got[resp.Status+" "+string(b)]++
		default:
			got["413"]++
		}
	}
	if got["413"] != attempts {
		t.Fatalf("%d of %d attempts read the 413; outcomes: %v", got["413"], attempts, got)
	}
}
