package stack

import (
	"io"
	"net"
	"testing"
	"time"
)

func TestDelayProxyDelaysServerToClient(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	p, err := newDelayProxy("127.0.0.1:0", echo.Addr().String(), 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip := func() time.Duration {
		start := time.Now()
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("read %q, %v", buf, err)
		}
		return time.Since(start)
	}
	if d := roundTrip(); d < 100*time.Millisecond {
		t.Fatalf("round trip %s through a 100 ms proxy", d)
	}
	p.SetDelay(0)
	if d := roundTrip(); d >= 100*time.Millisecond {
		t.Fatalf("round trip %s after the delay was removed", d)
	}
}

func TestLowerGTID(t *testing.T) {
	for _, tc := range []struct{ a, b, want string }{
		{"0-1-5", "0-1-9", "0-1-5"},
		{"0-1-12", "0-2-9", "0-2-9"},
		{"", "0-1-3", "0-1-3"},
		{"0-1-3", "", "0-1-3"},
	} {
		if got := lowerGTID(tc.a, tc.b); got != tc.want {
			t.Errorf("lowerGTID(%q, %q) = %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
}
