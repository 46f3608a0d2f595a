package drainhttp_test

import (
	"fmt"
	"time"

	"github.com/drainhttp/drainhttp"
)

func ExampleManager() {
	m, err := drainhttp.NewManager(drainhttp.ManagerOptions{
		DrainTime: 50 * time.Millisecond,
		Strategy:  drainhttp.Gradual,
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("before:", m.DrainClose(), m.Ready())

	idle := make(chan struct{})
	m.OnDrain(func() { close(idle) }) // e.g. close an idle connection
	complete := make(chan struct{})
	m.StartDrainSequence(func() { close(complete) })
	<-idle
	<-complete
	fmt.Println("after:", m.DrainClose(), m.Ready())
	// Output:
	// before: false true
	// after: true false
}

func ExampleAny() {
	server, _ := drainhttp.NewManager(drainhttp.ManagerOptions{})
	listener, _ := server.NewChild(drainhttp.ManagerOptions{})
	maintenance := drainhttp.DecisionFunc(func() bool { return false })

	d, err := drainhttp.Any(listener, maintenance)
	if err != nil {
		panic(err)
	}
	fmt.Println(d.DrainClose())
	server.HealthCheckFail() // reaches the listener's manager too
	fmt.Println(d.DrainClose())

	_, err = drainhttp.Any(listener, nil)
	fmt.Println(err)
	// Output:
	// false
	// true
	// drainhttp: invalid option: Any: decision 1 is nil
}
