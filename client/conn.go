package chatclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// readLimit bounds one frame from the server: a history page of 200
// messages of 4096 bytes each, JSON-escaped at worst, fits.
const readLimit = 16 << 20

// conn is one websocket and the goroutines that serve it (serve): the
// reader (the goroutine that called serve), the writer, the repairer and
// the pinger. They all end with ctx.
type conn struct {
	ws  *websocket.Conn // immutable
	url string          // immutable: the node's base URL
	gen uint64          // immutable once installed: numbers the Client's connections from 1

	ctx    context.Context // ends with the connection or the Client
	cancel context.CancelFunc

	writerWake   chan struct{} // capacity 1: requests are queued
	repairerWake chan struct{} // capacity 1: conversations wait for repair
}

func (cn *conn) wakeWriter()   { wake(cn.writerWake) }
func (cn *conn) wakeRepairer() { wake(cn.repairerWake) }

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// connect connects to one of the nodes and reads its welcome, trying the
// URLs in turn, from the one after the last tried, until one works, ctx
// ends, or a refusal says that trying again is useless. A reconnect (not
// first) waits a backoff before its first try too, so that the clients of
// a node that went away do not all come back at once.
func (c *Client) connect(ctx context.Context, first bool) (*conn, *Welcome, error) {
	var last error
	for attempt := 0; ; attempt++ {
		if attempt > 0 || !first {
			n := attempt
			if first {
				n--
			}
			t := time.NewTimer(backoff(n, c.opts.MinBackoff, c.opts.MaxBackoff, jitter))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				if last != nil {
					return nil, nil, fmt.Errorf("%w (the last try: %w)", ctx.Err(), last)
				}
				return nil, nil, ctx.Err()
			}
		}
		url := c.urls[c.next%len(c.urls)]
		c.next++
		cn, w, err := c.dialOnce(ctx, url)
		if err == nil {
			return cn, w, nil
		}
		if final(err) {
			return nil, nil, err
		}
		c.log.Warn("connect failed; trying again", "url", url, "attempt", attempt+1, "err", err)
		last = err
	}
}

// final reports whether err ends the client: a refusal or a close that
// trying again would meet again.
func final(err error) bool {
	var se *StatusError
	var ce *CloseError
	return errors.As(err, &se) && se.final() || errors.As(err, &ce)
}

// dialOnce logs in if it must, upgrades to a websocket at base and reads
// the welcome. With dev login, a token that the server no longer takes is
// replaced by a new login once.
func (c *Client) dialOnce(ctx context.Context, base string) (*conn, *Welcome, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	defer cancel()
	for relogin := c.opts.Token == ""; ; relogin = false {
		if c.token == "" {
			l, err := DevLogin(ctx, c.opts.HTTPClient, base, c.opts.Username)
			if err != nil {
				return nil, nil, err
			}
			c.token = l.Token
		}
		header := c.opts.Header.Clone()
		if header == nil {
			header = make(http.Header)
		}
		header.Set("Authorization", "Bearer "+c.token)
		ws, resp, err := websocket.Dial(ctx, wsURL(base), &websocket.DialOptions{HTTPClient: c.opts.HTTPClient, HTTPHeader: header})
		if err != nil {
			if resp == nil || resp.StatusCode == http.StatusSwitchingProtocols {
				return nil, nil, fmt.Errorf("chatclient: connect to %s: %w", base, err)
			}
			var body []byte
			if resp.Body != nil {
				body, _ = io.ReadAll(resp.Body)
			}
			se := &StatusError{Op: opUpgrade, URL: wsURL(base), Status: resp.StatusCode, Body: firstLine(body)}
			if se.Status == http.StatusUnauthorized && relogin {
				c.log.Info("the server refused the token; logging in again", "url", base)
				c.token = ""
				continue
			}
			return nil, nil, se
		}
		ws.SetReadLimit(readLimit)
		w, err := readWelcome(ctx, ws)
		if err != nil {
			ws.CloseNow()
			return nil, nil, fmt.Errorf("chatclient: connect to %s: %w", base, err)
		}
		cctx, ccancel := context.WithCancel(c.ctx)
		return &conn{
			ws: ws, url: base, ctx: cctx, cancel: ccancel,
			writerWake: make(chan struct{}, 1), repairerWake: make(chan struct{}, 1),
		}, w, nil
	}
}

// readWelcome reads the first frame, which is the welcome.
func readWelcome(ctx context.Context, ws *websocket.Conn) (*Welcome, error) {
	_, data, err := ws.Read(ctx)
	if err != nil {
		if ce := closeError(err); ce != nil {
			return nil, ce
		}
		return nil, err
	}
	in, err := decodeFrame(data)
	if err != nil {
		return nil, err
	}
	if in.Welcome == nil {
		return nil, fmt.Errorf("the first frame is %q, not a welcome", in.Type)
	}
	return in.Welcome, nil
}

// closeError is the CloseError of a server's close that ends the client,
// or nil for any other end of a connection (1001 first of all, 1011, 1013,
// a network failure), after which the client reconnects.
func closeError(err error) *CloseError {
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		return nil
	}
	switch ce.Code {
	case websocket.StatusNormalClosure, websocket.StatusPolicyViolation,
		websocket.StatusProtocolError, websocket.StatusUnsupportedData,
		websocket.StatusInvalidFramePayloadData, websocket.StatusMessageTooBig:
		return &CloseError{Code: int(ce.Code), Reason: ce.Reason}
	}
	return nil
}

// wsURL is the websocket URL of the node at base.
func wsURL(base string) string {
	switch {
	case strings.HasPrefix(base, "https://"):
		return "wss://" + strings.TrimPrefix(base, "https://") + "/ws"
	case strings.HasPrefix(base, "http://"):
		return "ws://" + strings.TrimPrefix(base, "http://") + "/ws"
	}
	return base + "/ws"
}

// serve runs cn until it ends, and returns why.
func (c *Client) serve(cn *conn) error {
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); c.writeLoop(cn) }()
	go func() { defer wg.Done(); c.repairLoop(cn) }()
	go func() { defer wg.Done(); c.pingLoop(cn) }()
	err := c.readLoop(cn)
	c.lost(cn)
	cn.cancel()
	cn.ws.CloseNow()
	wg.Wait()
	return err
}

// readLoop reads the server's frames and dispatches them, until the
// connection ends.
func (c *Client) readLoop(cn *conn) error {
	for {
		_, data, err := cn.ws.Read(cn.ctx)
		if err != nil {
			return err
		}
		in, err := decodeFrame(data)
		if err != nil {
			c.log.Debug("frame skipped", "url", cn.url, "err", err)
			continue
		}
		c.dispatch(cn, in)
	}
}

// dispatch hands one frame to whoever it is for.
func (c *Client) dispatch(cn *conn, in inbound) {
	switch {
	case in.Message != nil:
		if c.track.live(in.Message) {
			cn.wakeRepairer()
		}
	case in.Event != nil:
		if c.track.event(in.Event) {
			cn.wakeRepairer()
		}
	case in.History != nil:
		c.track.name(in.History.Messages)
		fallthrough
	case in.Ack != nil, in.Error != nil, in.Members != nil:
		if in.ID != "" && c.answer(in) {
			return
		}
		if in.Error != nil {
			c.log.Warn("the server refused a request", "url", cn.url, "code", in.Error.Code, "message", in.Error.Message, "id", in.ID)
			return
		}
		c.log.Debug("answer to no pending request", "url", cn.url, "type", in.Type, "id", in.ID)
	default:
		c.log.Debug("frame skipped", "url", cn.url, "type", in.Type)
	}
}

// writeLoop writes the queued requests on cn, one at a time, in order. A
// write that fails breaks the connection; the reader then sees it end.
func (c *Client) writeLoop(cn *conn) {
	for {
		k := c.take(cn)
		if k == nil {
			select {
			case <-cn.writerWake:
				continue
			case <-cn.ctx.Done():
				return
			}
		}
		ctx, cancel := context.WithTimeout(cn.ctx, c.opts.WriteTimeout)
		err := cn.ws.Write(ctx, websocket.MessageText, k.frame)
		cancel()
		if err != nil {
			if cn.ctx.Err() == nil {
				c.log.Warn("write failed; reconnecting", "url", cn.url, "err", err)
			}
			cn.ws.CloseNow()
			return
		}
	}
}

// pingLoop pings the server every PingInterval and breaks a connection
// whose pong does not come within the interval.
func (c *Client) pingLoop(cn *conn) {
	every := c.opts.PingInterval
	if every < 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-cn.ctx.Done():
			return
		}
		ctx, cancel := context.WithTimeout(cn.ctx, every)
		err := cn.ws.Ping(ctx)
		cancel()
		if err != nil {
			if cn.ctx.Err() == nil {
				c.log.Warn("ping failed; reconnecting", "url", cn.url, "err", err)
			}
			cn.ws.CloseNow()
			return
		}
	}
}
