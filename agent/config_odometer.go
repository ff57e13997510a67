package agent

// OdometerConfig is the GPS odometer: the truck's mileage, kept across restarts and power cuts.
type OdometerConfig struct {
}
