package sdktest

import (
	"testing"

	"github.com/waybill-iot/waybill/sdk/pki"
)

func TestSmoke(t *testing.T) {
	for _, k := range Kinds {
		t.Run(string(k), func(t *testing.T) {
			b := Start(t, k, Options{Dispatch: []string{"office"}})
			b.Truck("truck-a")
			b.Issue(pki.RoleDispatch, "office-2", pki.IssueOptions{})
			b.Restart()
			t.Log(b.Logs())
		})
	}
}
