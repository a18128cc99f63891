package main

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// registrar registers users through the gateways' HTTP APIs: the i-th
// request it makes goes to -http target i mod n. Safe for concurrent use.
type registrar struct {
	c    config
	hcs  []*fasthttp.HostClient // one per target, in c.http's order
	next atomic.Uint64          // requests started
}

func newRegistrar(c config) *registrar {
	r := &registrar{c: c}
	for _, addr := range c.http {
		// One connection per request in flight: -concurrency above the
		// pool would otherwise fail with "no free connections".
		r.hcs = append(r.hcs, &fasthttp.HostClient{
			Addr: addr, MaxConns: max(256, c.concurrency), MaxConnWaitTimeout: 10 * time.Second,
			ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		})
	}
	return r
}

// register creates user id (an agent when agent is set) with a token of
// our choosing and returns it.
func (r *registrar) register(id string, agent bool) (string, error) {
	typ := 0
	if agent {
		typ = 1
	}
	token := "token_of_" + id + "_bench" // 16+ characters (PROTOCOL §1.1)
	code, body, err := r.post(fmt.Sprintf(`{"senderId":%q,"type":%d,"token":%q}`, id, typ, token))
	if err != nil {
		return "", fmt.Errorf("initUser %s: %w", id, err)
	}
	if code != 200 || string(body) != `{"code":200,"msg":"success","data":null}` {
		return "", fmt.Errorf("initUser %s: HTTP %d %s", id, code, body)
	}
	return token, nil
}

func (r *registrar) post(body string) (int, []byte, error) {
	return r.do(fasthttp.MethodPost, "/im/vanke/initUser", body)
}

func (r *registrar) do(method, path, body string) (int, []byte, error) {
	hc := r.hcs[(r.next.Add(1)-1)%uint64(len(r.hcs))]
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + hc.Addr + path)
	req.Header.SetMethod(method)
	if r.c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+r.c.apiKey)
	}
	if body != "" {
		req.Header.SetContentType("application/json")
		req.SetBodyString(body)
	}
	if err := hc.Do(req, resp); err != nil {
		return 0, nil, err
	}
	return resp.StatusCode(), append([]byte(nil), resp.Body()...), nil
}

// runHTTP measures initUser requests/s with -concurrency in flight; with
// -healthz, GET /healthz: what HTTP alone costs this client and machine.
func runHTTP(c config) (Result, error) {
	s := newStats(c.part != "")
	r := newRegistrar(c)
	nonce := c.nonce()
	var n atomic.Int64
	var wg sync.WaitGroup
	done := make(chan struct{})
	go s.progress(nil2(), done)
	start := time.Now()
	end := start.Add(c.duration)
	for w := 0; w < c.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				i := n.Add(1)
				t0 := time.Now()
				var code int
				var body []byte
				var err error
				want := `{"code":200,"msg":"success","data":null}`
				if c.healthz {
					code, body, err = r.do(fasthttp.MethodGet, "/healthz", "")
					want = string(body)
				} else {
					code, body, err = r.post(fmt.Sprintf(`{"senderId":"bh%s_%d","type":0,"token":"token_of_bh%s_%d_bench"}`, nonce, i, nonce, i))
				}
				switch {
				case err != nil:
					s.errorf("%v", err)
				case code != 200 || string(body) != want:
					s.replyCode(code)
				default:
					s.acked(time.Since(t0), 0)
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	el := time.Since(start)
	mode := "http"
	if c.healthz {
		mode = "http-healthz"
	}
	res := s.result(mode, el)
	res.HTTPRate = float64(res.Acks) / el.Seconds()
	return res, nil
}
