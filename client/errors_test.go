package chatclient_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	chatclient "github.com/wirechat/chat/client"
	"github.com/wirechat/chat/gateway"
	"github.com/wirechat/chat/internal/chattest"
	"github.com/wirechat/chat/internal/redistest"
	"github.com/wirechat/chat/protocol"
)

// TestErrorCodes provokes every error code that a client can provoke and
// checks that it comes back as an *Error with that code, matched by its
// sentinel and by no other. (internal cannot be provoked from outside: the
// decoding of its frame is in TestErrorFrames.)
func TestErrorCodes(t *testing.T) {
	url := chattest.Start(t, chattest.Memory(), testConfig).URL
	ctx := ctxFor(t)
	alice := dial(t, "alice", url)
	bob := dial(t, "bob", url)
	if err := alice.Create(ctx, "#owned"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		code protocol.Code
		do   func() error
	}{
		{protocol.CodeBadRequest, func() error {
			_, err := alice.History(ctx, "#owned", chatclient.HistoryQuery{Before: new(uint64(5)), After: new(uint64(1))})
			return err
		}},
		{protocol.CodeBadRequest, func() error {
			_, err := alice.History(ctx, "#owned", chatclient.HistoryQuery{Limit: 500})
			return err
		}},
		{protocol.CodeInvalidTarget, func() error { return alice.Join(ctx, "owned") }},
		{protocol.CodeInvalidTarget, func() error { _, err := alice.Send(ctx, "@no body", "hi"); return err }},
		{protocol.CodeInvalidMessage, func() error { _, err := alice.Send(ctx, "@bob", " \t "); return err }},
		{protocol.CodeNotFound, func() error { return alice.Join(ctx, "#nowhere") }},
		{protocol.CodeNotFound, func() error { _, err := alice.Send(ctx, "@nobody", "hi"); return err }},
		{protocol.CodeAlreadyExists, func() error { return bob.Create(ctx, "#owned") }},
		{protocol.CodeForbidden, func() error { return bob.Destroy(ctx, "#owned") }},
		{protocol.CodeNotMember, func() error { _, err := bob.Send(ctx, "#owned", "hi"); return err }},
		{protocol.CodeNotMember, func() error { return bob.Leave(ctx, "#owned") }},
	}
	for _, tc := range cases {
		err := tc.do()
		checkCode(t, err, tc.code)
	}

	t.Run("rate_limited", func(t *testing.T) {
		url := chattest.Start(t, chattest.Memory(), gateway.Config{RateLimit: 1}).URL
		carol := dial(t, "carol", url)
		if err := carol.Create(ctx, "#busy"); err != nil {
			t.Fatal(err)
		}
		// The burst is 2: of requests made faster than one a second, some
		// must be refused.
		var refused error
		for range 10 {
			if err := carol.Join(ctx, "#busy"); err != nil {
				refused = err
				break
			}
		}
		checkCode(t, refused, protocol.CodeRateLimited)
	})

	t.Run("unavailable", func(t *testing.T) {
		srv := redistest.Start(t, redistest.Options{})
		url := chattest.Start(t, chattest.RedisAt(t, srv.URL)(), testConfig).URL
		dave := dial(t, "dave", url)
		if err := dave.Create(ctx, "#down"); err != nil {
			t.Fatal(err)
		}
		if err := dave.Join(ctx, "#down"); err != nil {
			t.Fatal(err)
		}
		srv.Kill(t)
		// A command is refused at once; the connection stays open.
		checkCode(t, dave.Create(ctx, "#other"), protocol.CodeUnavailable)
		// A message is tried again with its id until its context ends;
		// the error says both.
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := dave.Send(sctx, "#down", "into the void")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("send while Redis is down: %v, want the deadline", err)
		}
		checkCode(t, err, protocol.CodeUnavailable)
		if dave.Err() != nil {
			t.Fatalf("the client ended: %v", dave.Err())
		}
	})
}

// checkCode checks that err is an *Error with code, matched by its
// sentinel and by no other.
func checkCode(t *testing.T, err error, code protocol.Code) {
	t.Helper()
	var e *chatclient.Error
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("want an *Error with code %s, got %v", code, err)
	}
	for _, s := range sentinels {
		if errors.Is(err, s) != (s.Code == code) {
			t.Fatalf("%v: errors.Is(err, %v) = %v", err, s, errors.Is(err, s))
		}
	}
}

var sentinels = []*chatclient.Error{
	chatclient.ErrRateLimited, chatclient.ErrBadRequest, chatclient.ErrInvalidTarget, chatclient.ErrInvalidMessage,
	chatclient.ErrNotFound, chatclient.ErrAlreadyExists, chatclient.ErrForbidden, chatclient.ErrNotMember,
	chatclient.ErrUnavailable, chatclient.ErrInternal,
}

// TestEverySentinel: each code of the protocol has its sentinel, and the
// sentinel's text names the code.
func TestEverySentinel(t *testing.T) {
	codes := []protocol.Code{
		protocol.CodeRateLimited, protocol.CodeBadRequest, protocol.CodeInvalidTarget, protocol.CodeInvalidMessage,
		protocol.CodeNotFound, protocol.CodeAlreadyExists, protocol.CodeForbidden, protocol.CodeNotMember,
		protocol.CodeUnavailable, protocol.CodeInternal,
	}
	if len(codes) != len(sentinels) {
		t.Fatalf("%d codes, %d sentinels", len(codes), len(sentinels))
	}
	for i, code := range codes {
		if sentinels[i].Code != code || !strings.Contains(sentinels[i].Error(), string(code)) {
			t.Errorf("sentinel %d is %v, want code %s", i, sentinels[i], code)
		}
		e := &chatclient.Error{Code: code, Message: "why", ID: "x.1"}
		if !errors.Is(e, sentinels[i]) || errors.Is(sentinels[i], e) {
			t.Errorf("%s: an error with a message must match the sentinel, not the reverse", code)
		}
	}
}

// TestTooLarge: a message that would be a frame over the server's limit is
// not sent (the server would close the connection with 1009).
func TestTooLarge(t *testing.T) {
	url := chattest.Start(t, chattest.Memory(), testConfig).URL
	ctx := ctxFor(t)
	alice := dial(t, "alice", url)
	if _, err := alice.Send(ctx, "@alice", strings.Repeat("x", 20000)); !errors.Is(err, chatclient.ErrTooLarge) {
		t.Fatalf("send of 20000 bytes: %v", err)
	}
	// Over the text limit but within the frame: the server says so.
	_, err := alice.Send(ctx, "@alice", strings.Repeat("x", 5000))
	checkCode(t, err, protocol.CodeInvalidMessage)
	if seq, err := alice.Send(ctx, "@alice", "still connected"); err != nil || seq != 1 {
		t.Fatalf("after: %d, %v", seq, err)
	}
}
