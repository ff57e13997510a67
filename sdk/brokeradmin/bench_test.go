package brokeradmin_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/waybill-iot/waybill/sdk/brokerconf"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// BenchmarkTellOneTruck measures what `waybill pki issue --broker` costs as the fleet grows: a Sync that
// lists the broker's clients and roles and creates one truck, then its removal, on a Mosquitto whose plugin
// already lists the fleet. The plugin rewrites its whole file after every change, so both grow with the
// fleet.
func BenchmarkTellOneTruck(b *testing.B) {
	for _, fleet := range []int{100, 1000, 5000} {
		b.Run(fmt.Sprintf("fleet=%d", fleet), func(b *testing.B) {
			br := sdktest.StartMosquitto(b, sdktest.Options{})
			ids := []pki.Identity{{Name: pki.AdminName, Role: pki.RoleAdmin}}
			for i := range fleet {
				ids = append(ids, pki.Identity{Name: fmt.Sprintf("truck-%05d", i), Role: pki.RoleTruck})
			}
			conf, err := brokerconf.ACL{}.Dynsec(ids)
			if err != nil {
				b.Fatal(err)
			}
			br.Stop()
			if err := os.WriteFile(filepath.Join(br.Dir, brokerconf.AccessDir, brokerconf.DynsecFile), conf, 0o600); err != nil {
				b.Fatal(err)
			}
			br.Start()
			a := br.Admin()
			ctx := context.Background()
			extra := pki.Identity{Name: "truck-new", Role: pki.RoleTruck}
			withExtra := append(ids[1:len(ids):len(ids)], extra)
			b.ResetTimer()
			for range b.N {
				if res, err := a.Sync(ctx, withExtra); err != nil || len(res.Created) != 1 {
					b.Fatalf("sync: %+v %v", res, err)
				}
				if err := a.Remove(ctx, extra.Name); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(conf))/1e6, "file_MB")
		})
	}
}
