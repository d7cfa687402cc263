// Command echobot is a chat bot that answers in a channel: every message
// that someone else writes there comes back from the bot as
// "echo: <text>". It is an example of the Go client (package client): a
// login, a join, a loop over Updates that sends from inside the loop, and
// nothing at all for reconnecting, which the client does by itself.
//
//	go run ./examples/echobot -url http://127.0.0.1:8080 -channel '#echo'
//
// The bot logs in with the server's dev login (CHAT_DEV_LOGIN=true) as
// -name, or uses the session token in the environment variable
// CHAT_TOKEN. -url takes several nodes, comma-separated: the bot moves to
// another when its node shuts down or dies. It creates the channel if it
// does not exist, joins it, and answers until SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"unicode/utf8"

	chatclient "github.com/wirechat/chat/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv("CHAT_TOKEN"), os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "echobot:", err)
		os.Exit(1)
	}
}

// run parses the flags, connects, and answers until ctx ends (nil) or the
// server ends the bot's session (an error).
func run(ctx context.Context, args []string, token string, stderr io.Writer) error {
	fs := flag.NewFlagSet("echobot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	urls := fs.String("url", "http://127.0.0.1:8080", "base URLs of the chat's nodes, comma-separated")
	channel := fs.String("channel", "#echo", "the channel to answer in")
	name := fs.String("name", "echobot", "the username to log in as with dev login (when CHAT_TOKEN is not set)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	opts := chatclient.Options{Token: token, Logger: log}
	if token == "" {
		opts.Username = *name
	}
	c, err := chatclient.Dial(ctx, strings.Split(*urls, ","), opts)
	if err != nil {
		return err
	}
	defer c.Close()
	b := &bot{c: c, channel: strings.ToLower(*channel), log: log}
	if err := b.enter(ctx); err != nil {
		return err
	}
	log.Info("answering", "channel", b.channel, "as", c.Welcome().Username)
	return b.serve(ctx)
}

// bot answers in one channel.
type bot struct {
	c       *chatclient.Client
	channel string
	log     *slog.Logger
}

// enter creates the channel if it does not exist, and joins it.
func (b *bot) enter(ctx context.Context) error {
	if err := b.c.Create(ctx, b.channel); err != nil && !errors.Is(err, chatclient.ErrAlreadyExists) {
		return fmt.Errorf("create %s: %w", b.channel, err)
	}
	if err := b.c.Join(ctx, b.channel); err != nil {
		return fmt.Errorf("join %s: %w", b.channel, err)
	}
	return nil
}

// serve answers each message of the channel from someone else, once: the
// client hands on each message once, also across reconnects.
func (b *bot) serve(ctx context.Context) error {
	me := b.c.Welcome().Identifier
	for {
		var u chatclient.Update
		var ok bool
		select {
		case u, ok = <-b.c.Updates():
		case <-ctx.Done():
			return nil
		}
		switch {
		case !ok:
			return fmt.Errorf("the server ended the session: %w", b.c.Err())
		case u.Message != nil && u.Message.Conversation == b.channel && u.Message.Identifier != me:
			if _, err := b.c.Send(ctx, b.channel, echo(u.Message.Text)); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				b.log.Warn("could not answer", "to", u.Message.Username, "err", err)
			}
		case u.Event != nil && u.Event.Kind == "destroy" && u.Event.Identifier == b.channel:
			b.log.Info("the channel was destroyed; creating it again", "channel", b.channel)
			if err := b.enter(ctx); err != nil && ctx.Err() == nil {
				return err
			}
		case u.Connected != nil && u.Connected.Reconnect:
			b.log.Info("reconnected", "url", u.Connected.URL)
		}
	}
}

// maxText is the server's default longest message (CHAT_MAX_MESSAGE_BYTES).
const maxText = 4096

// echo is the answer to text: "echo: " and the text, cut to fit maxText on
// a character boundary.
func echo(text string) string {
	const prefix = "echo: "
	if len(prefix)+len(text) > maxText {
		cut := maxText - len(prefix)
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = text[:cut]
	}
	return prefix + text
}
