// Command probe is the real node's test workload: a small HTTP server that
// stops on SIGTERM, and the client checks the tests run inside pods (the
// images have no shell).
//
//	probe serve ADDR        answer every request with the pod's hostname
//	probe get URL           print the body of one GET; exit 1 on failure
//	probe lookup NAME       print the addresses NAME resolves to
//	probe dial ADDR         open one TCP connection; exit 1 on failure
//	probe routes            print the IPv4 routing table (/proc/net/route)
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const timeout = 3 * time.Second

func main() {
	if len(os.Args) < 2 {
		fail("usage: probe serve|get|lookup|dial|routes [ARG]")
	}
	arg := ""
	if len(os.Args) > 2 {
		arg = os.Args[2]
	}
	switch os.Args[1] {
	case "serve":
		serve(arg)
	case "get":
		client := http.Client{Timeout: timeout}
		resp, err := client.Get(arg)
		if err != nil {
			fail(err.Error())
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			fail(err.Error())
		}
		fmt.Printf("%s", body)
	case "lookup":
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupHost(ctx, arg)
		if err != nil {
			fail(err.Error())
		}
		for _, addr := range addrs {
			fmt.Println(addr)
		}
	case "dial":
		conn, err := net.DialTimeout("tcp", arg, timeout)
		if err != nil {
			fail(err.Error())
		}
		conn.Close()
		fmt.Println("connected")
	case "routes":
		table, err := os.ReadFile("/proc/net/route")
		if err != nil {
			fail(err.Error())
		}
		fmt.Printf("%s", table)
	default:
		fail("unknown command " + os.Args[1])
	}
}

func serve(addr string) {
	hostname, _ := os.Hostname()
	server := &http.Server{
		Addr:              addr,
		ReadHeaderTimeout: timeout,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintln(w, hostname)
		}),
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_ = server.Shutdown(ctx)
	}()
	if err := server.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fail(err.Error())
	}
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, message)
	os.Exit(1)
}
