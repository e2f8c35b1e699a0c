-- Hold back new runs; a run in flight is left alone.
obj.spec.suspend = true
return obj
