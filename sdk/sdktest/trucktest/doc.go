// Package trucktest runs a real truck client (sdk/truck, with its own bbolt store) against a test broker
// for the length of a test. It is apart from sdktest because sdk/truck's own tests import sdktest.
//
//	tr, st := trucktest.Run(t, b, b.Truck("truck-1"), trucktest.Options{})
//	tr.Book().Act(...)   // the driver
//	st.Append(...)       // a fix, as the agent stores it
package trucktest
