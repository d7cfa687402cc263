package redistest

import (
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Proxy starts an embedded toxiproxy on a free port of 127.0.0.1 in front
// of upstream (host:port), and stops it when t ends. A test points one
// node at proxy.Listen to cut that node alone off: with a toxic (a silent
// network) or with Stop and Start (connections reset, then refused).
func Proxy(t testing.TB, upstream string) *toxiproxy.Proxy {
	t.Helper()
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	proxy := toxiproxy.NewProxy(server, "redis", "127.0.0.1:0", upstream)
	if err := proxy.Start(); err != nil {
		t.Fatalf("redistest: start proxy: %v", err)
	}
	t.Cleanup(proxy.Stop)
	return proxy
}
