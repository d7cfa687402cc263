package chatclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/coder/websocket"

	"github.com/wirechat/chat/protocol"
)

// Client is a user's connection to a chat, kept up across the failures of
// nodes and networks: see the package doc. Its methods are safe for
// concurrent use.
//
// Its goroutines: run (connects, then serves each connection: it is the
// reader), and per connection a writer, a repairer and a pinger (conn.go);
// pump hands Updates to the caller (updates.go). Locks: Client.mu guards
// the requests and the current connection; tracker.mu the positions
// (resume.go); updates.mu the queue of Updates. The only nesting is
// tracker.mu -> updates.mu (positions change and their Updates are queued
// in one step).
type Client struct {
	opts  Options      // immutable, with defaults
	urls  []string     // immutable: the nodes' base URLs
	log   *slog.Logger // immutable
	ids   *ids
	track *tracker
	out   *updates

	ctx     context.Context // ends with Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup // run and pump
	done    chan struct{}  // closed when the client has ended
	once    sync.Once      // Close
	closing atomic.Bool    // Close was called: the end of the connection is ours

	// Owned by the goroutine that connects (Dial, then run).
	token string // the login session's token
	next  int    // the index of the URL to try next
	gen   uint64 // the last connection's number

	mu      sync.Mutex
	cur     *conn            // guarded by mu: the connection whose welcome came, nil between connections
	welcome Welcome          // guarded by mu: the last welcome
	calls   map[string]*call // guarded by mu: requests not answered, by id
	queue   []*call          // guarded by mu: requests to write, in order
	callN   uint64           // guarded by mu: the last call's place in the order
	ended   bool             // guarded by mu
	err     error            // guarded by mu: why the client ended
}

// Dial connects to the chat at one of urls (the base URLs of its nodes,
// e.g. "https://chat.example.com" or "http://127.0.0.1:8080"; ws:// and
// wss:// URLs of /ws work too) and returns once the welcome has arrived.
// It tries the URLs in turn, with backoff, until one works or ctx ends;
// ctx bounds only that, not the Client's life. It fails at once when
// trying again is useless: a token that the server refuses (401), a
// forbidden origin (403), dev login off (404).
//
// The first Update is the Connected of that connection. Call Close when
// done.
func Dial(ctx context.Context, urls []string, opts Options) (*Client, error) {
	bases := make([]string, 0, len(urls))
	for _, u := range urls {
		b, err := baseURL(u)
		if err != nil {
			return nil, err
		}
		bases = append(bases, b)
	}
	if len(bases) == 0 {
		return nil, errors.New("chatclient: no URL to connect to")
	}
	if opts.Token == "" && opts.Username == "" {
		return nil, errors.New("chatclient: no credentials: set Options.Token or Options.Username")
	}
	opts = opts.withDefaults()
	out := newUpdates()
	c := &Client{
		opts:  opts,
		urls:  bases,
		log:   opts.Logger,
		ids:   newIDs(),
		track: newTracker(out),
		out:   out,
		done:  make(chan struct{}),
		token: opts.Token,
		calls: make(map[string]*call),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	cn, w, err := c.connect(ctx, true)
	if err != nil {
		c.cancel()
		return nil, err
	}
	c.install(cn, w)
	c.wg.Add(2)
	go func() { defer c.wg.Done(); c.out.pump(c.ctx) }()
	go func() { defer c.wg.Done(); c.run(cn) }()
	return c, nil
}

// baseURL turns a URL given to Dial into a node's base URL: http(s), with
// no trailing slash and no /ws.
func baseURL(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", fmt.Errorf("chatclient: URL %q: %w", raw, err)
	}
	switch u.Scheme {
	case "http", "https":
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	default:
		return "", fmt.Errorf("chatclient: URL %q: want http, https, ws or wss", raw)
	}
	if u.Host == "" {
		return "", fmt.Errorf("chatclient: URL %q has no host", raw)
	}
	u.Path = strings.TrimSuffix(strings.TrimRight(u.Path, "/"), "/ws")
	u.RawQuery, u.Fragment = "", ""
	return u.String(), nil
}

// install makes cn, whose welcome w just came, the current connection.
func (c *Client) install(cn *conn, w *Welcome) {
	c.gen++
	cn.gen = c.gen
	repairs := c.track.welcome(w, cn.gen, cn.url)
	c.mu.Lock()
	c.cur = cn
	c.welcome = *w
	if len(c.queue) > 0 {
		cn.wakeWriter()
	}
	c.mu.Unlock()
	if repairs {
		cn.wakeRepairer()
	}
	c.log.Info("connected", "url", cn.url, "user", w.Username, "connection", cn.gen)
}

// run serves the connections one after the other until the client ends.
func (c *Client) run(cn *conn) {
	for {
		err := c.serve(cn)
		if c.closing.Load() {
			c.end(ErrClosed)
			return
		}
		var ce *CloseError
		if ce = closeError(err); ce != nil {
			err = ce
		}
		c.out.push(Update{Disconnected: &Disconnected{URL: cn.url, Err: err, Final: ce != nil}})
		if ce != nil {
			c.log.Info("closed by the server", "url", cn.url, "code", ce.Code, "reason", ce.Reason)
			c.end(ce)
			return
		}
		c.log.Info("disconnected; reconnecting", "url", cn.url, "err", err)
		next, w, err := c.connect(c.ctx, false)
		if err != nil {
			if c.closing.Load() {
				c.end(ErrClosed)
				return
			}
			c.log.Warn("cannot reconnect", "err", err)
			c.out.push(Update{Disconnected: &Disconnected{Err: err, Final: true}})
			c.end(err)
			return
		}
		c.install(next, w)
		cn = next
	}
}

// end ends the client with err: every request waiting fails with it, and
// Updates closes once the caller has taken what is queued.
func (c *Client) end(err error) {
	c.mu.Lock()
	c.ended, c.err = true, err
	calls := c.calls
	c.calls, c.queue = nil, nil
	c.mu.Unlock()
	for _, k := range calls {
		k.done <- result{err: c.endedErr(err)}
	}
	c.out.finish()
	close(c.done)
}

// endedErrLocked is what a request to a client that ended fails with.
func (c *Client) endedErrLocked() error { return c.endedErr(c.err) }

func (c *Client) endedErr(err error) error {
	if err == nil || errors.Is(err, ErrClosed) {
		return ErrClosed
	}
	return fmt.Errorf("%w: %w", ErrClosed, err)
}

// Close closes the connection with 1000, stops reconnecting, fails the
// requests still waiting with ErrClosed, drops the Updates not taken yet
// and closes the channel. It waits for the client's goroutines to end, at
// most as long as the close handshake may take (10s). It returns nil; it is
// safe to call more than once.
func (c *Client) Close() error {
	c.once.Do(func() {
		c.closing.Store(true)
		c.mu.Lock()
		cur := c.cur
		c.mu.Unlock()
		if cur != nil {
			cur.ws.Close(websocket.StatusNormalClosure, "")
		}
		c.cancel()
	})
	c.wg.Wait()
	return nil
}

// Done is closed when the client has ended: after Close, or after the
// server ended it for good (see Err).
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the client ended: nil while it runs, ErrClosed after
// Close, else a *CloseError (1000: ErrLoggedOut; 1008: ErrPolicy) or the
// refusal of a reconnect that trying again would meet again (a
// *StatusError: 401, the token was revoked).
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Updates returns the channel of the messages, events and connection
// changes, in order (see Update). Read it: what the caller has not taken
// waits in memory. It is closed when the client has ended and everything
// before was taken, or at Close.
func (c *Client) Updates() <-chan Update { return c.out.out }

// Welcome returns the welcome of the current (or the last) connection.
func (c *Client) Welcome() Welcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.welcome
}

// Create creates a channel ("#name"); the user becomes its owner, but not
// a member. It returns when the server has acknowledged it.
func (c *Client) Create(ctx context.Context, channel string) error {
	_, err := c.roundTrip(ctx, command(protocol.ActionCreate, channel), once, 0)
	return err
}

// Destroy destroys a channel that the user owns.
func (c *Client) Destroy(ctx context.Context, channel string) error {
	_, err := c.roundTrip(ctx, command(protocol.ActionDestroy, channel), once, 0)
	return err
}

// Join makes the user a member of a channel: every session of the user
// receives its messages from the ack on. Joining a channel one is in
// succeeds.
func (c *Client) Join(ctx context.Context, channel string) error {
	_, err := c.roundTrip(ctx, command(protocol.ActionJoin, channel), resend, 0)
	return err
}

// Leave ends the user's membership of a channel.
func (c *Client) Leave(ctx context.Context, channel string) error {
	_, err := c.roundTrip(ctx, command(protocol.ActionLeave, channel), once, 0)
	return err
}

// Send sends text to a channel ("#name") or a user ("@name") and returns
// the message's seq once the server has stored it. The message also comes
// back on Updates, as to every member.
//
// Send delivers at most once and tries hard to deliver: while the
// connection is down it waits for the next one; a message whose answer was
// lost with its connection is sent again, with the same request id, so the
// server answers with the first one's seq and does not deliver it twice;
// so is one that the server refused as unavailable. It stops when ctx
// ends: the error then matches ctx's error (and the last refusal, if the
// server was unavailable), and the message may or may not have been
// stored.
func (c *Client) Send(ctx context.Context, target, text string) (uint64, error) {
	in, err := c.roundTrip(ctx, message(target, text), resend, 0)
	if err != nil {
		return 0, err
	}
	if in.Ack == nil {
		return 0, fmt.Errorf("chatclient: a message answered with a %s frame", in.Type)
	}
	c.track.sent(target, in.Ack.Seq)
	return in.Ack.Seq, nil
}

// HistoryQuery chooses a page of history. At most one of Before and After
// may be set (the server refuses both with bad_request).
type HistoryQuery struct {
	// Before, if set (at least 1), asks for the newest messages whose seq
	// is lower.
	Before *uint64
	// After, if set, asks for the oldest messages whose seq is higher (0:
	// from the oldest stored). With neither, the newest messages.
	After *uint64
	// Limit is how many messages at most: 1 to 200; if zero, the server's
	// default (50).
	Limit int
}

// History returns a page of a conversation's stored messages: a channel
// the user is in, or "@name", the conversation with that user.
//
//	h, err := c.History(ctx, "#go", chatclient.HistoryQuery{Before: new(uint64(1042))})
func (c *Client) History(ctx context.Context, target string, q HistoryQuery) (*History, error) {
	in, err := c.roundTrip(ctx, historyRequest(target, q), resend, 0)
	if err != nil {
		return nil, err
	}
	if in.History == nil {
		return nil, fmt.Errorf("chatclient: history answered with a %s frame", in.Type)
	}
	return in.History, nil
}

// MembersQuery chooses a page of a channel's members.
type MembersQuery struct {
	// After, if not empty, lists the usernames greater than it: the last
	// username of the page before.
	After string
	// Limit is how many members at most: 1 to 1000; if zero, the
	// server's default (1000).
	Limit int
}

// Members returns a page of a channel's members, by username, with
// whether each is online. Any user may list any channel.
func (c *Client) Members(ctx context.Context, channel string, q MembersQuery) (*Members, error) {
	in, err := c.roundTrip(ctx, membersRequest(channel, q), resend, 0)
	if err != nil {
		return nil, err
	}
	if in.Members == nil {
		return nil, fmt.Errorf("chatclient: members answered with a %s frame", in.Type)
	}
	return in.Members, nil
}

// Typing tells the other members of a channel, or the other party of a
// conversation ("@name"), that the user is typing. The server passes on
// at most one per user and target every 3 seconds.
func (c *Client) Typing(ctx context.Context, target string) error {
	_, err := c.roundTrip(ctx, command(protocol.ActionTyping, target), resend, 0)
	return err
}

// Read moves the user's read marker of a conversation to seq, if that is
// further than where it stands; every session of the user is told.
func (c *Client) Read(ctx context.Context, target string, seq uint64) error {
	_, err := c.roundTrip(ctx, readRequest(target, seq), resend, 0)
	return err
}

// The requests, as the methods write them.

func command(action, target string) protocol.Request {
	return protocol.Request{Type: protocol.TypeCommand, Action: action, Target: target}
}

func message(target, text string) protocol.Request {
	return protocol.Request{Type: protocol.TypeMessage, Target: target, Message: text}
}

func historyRequest(target string, q HistoryQuery) protocol.Request {
	r := command(protocol.ActionHistory, target)
	r.Before, r.After = q.Before, q.After
	if q.Limit != 0 {
		r.Limit = &q.Limit
	}
	return r
}

func membersRequest(channel string, q MembersQuery) protocol.Request {
	r := command(protocol.ActionMembers, channel)
	if q.After != "" {
		r.AfterName = &q.After
	}
	if q.Limit != 0 {
		r.Limit = &q.Limit
	}
	return r
}

func readRequest(target string, seq uint64) protocol.Request {
	r := command(protocol.ActionRead, target)
	r.Seq = &seq
	return r
}
