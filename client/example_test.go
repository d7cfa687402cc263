package chatclient_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strings"
	"time"

	chatclient "github.com/wirechat/chat/client"
)

// A bot logs in with dev login, creates a channel, joins it, says hello
// and reads its own message back: every member gets each message, the
// sender too. (serverURL is a chat node run with CHAT_DEV_LOGIN=true.)
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := chatclient.Dial(ctx, []string{serverURL}, chatclient.Options{Username: "greeter"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	if err := c.Create(ctx, "#welcome"); err != nil && !errors.Is(err, chatclient.ErrAlreadyExists) {
		log.Fatal(err)
	}
	if err := c.Join(ctx, "#welcome"); err != nil {
		log.Fatal(err)
	}
	seq, err := c.Send(ctx, "#welcome", "hello, world")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("sent as", seq)

	for u := range c.Updates() {
		if m := u.Message; m != nil {
			fmt.Printf("%s #%d <%s> %s\n", m.Conversation, m.Seq, m.Username, m.Text)
			break
		}
	}
	// Output:
	// sent as 1
	// #welcome #1 <greeter> hello, world
}

// Updates is one ordered stream of what happens: read it in a loop, and
// act on each kind. Calling the client's methods from the loop is fine.
func ExampleClient_Updates() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := chatclient.Dial(ctx, []string{serverURL}, chatclient.Options{Username: "watcher"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Send(ctx, "@watcher", "a note to self"); err != nil {
		log.Fatal(err)
	}

	for u := range c.Updates() {
		switch {
		case u.Connected != nil:
			fmt.Println("connected as", u.Connected.Welcome.Username)
		case u.Message != nil:
			fmt.Println(u.Message.Conversation, u.Message.Text)
			return
		case u.Event != nil:
			fmt.Println(u.Event.Kind, u.Event.Target)
		case u.Disconnected != nil:
			fmt.Println("disconnected:", u.Disconnected.Err)
		case u.Gap != nil:
			fmt.Println("gone from history:", u.Gap.From, "to", u.Gap.To)
		}
	}
	// Output:
	// connected as watcher
	// @watcher a note to self
}

// History reads a conversation backwards, a page at a time.
func ExampleClient_History() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := chatclient.Dial(ctx, []string{serverURL}, chatclient.Options{Username: "archivist"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for _, text := range []string{"one", "two", "three", "four", "five"} {
		if _, err := c.Send(ctx, "@archivist", text); err != nil {
			log.Fatal(err)
		}
	}

	q := chatclient.HistoryQuery{Limit: 2}
	for {
		h, err := c.History(ctx, "@archivist", q)
		if err != nil {
			log.Fatal(err)
		}
		var page []string
		for _, m := range h.Messages {
			page = append(page, fmt.Sprint(m.Seq, ":", m.Text))
		}
		fmt.Println(strings.Join(page, " "))
		if !h.More {
			break
		}
		q.Before = new(h.Messages[0].Seq)
	}
	// Output:
	// 4:four 5:five
	// 2:two 3:three
	// 1:one
}

// A refused request is an *Error carrying the protocol's code: match it
// with the code's sentinel, or read it.
func ExampleError() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := chatclient.Dial(ctx, []string{serverURL}, chatclient.Options{Username: "wanderer"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	err = c.Join(ctx, "#nowhere")
	fmt.Println(errors.Is(err, chatclient.ErrNotFound))
	var e *chatclient.Error
	if errors.As(err, &e) {
		fmt.Println(e.Code)
	}
	// Output:
	// true
	// not_found
}
