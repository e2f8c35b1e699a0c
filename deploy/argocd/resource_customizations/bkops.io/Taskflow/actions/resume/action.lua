-- Let new runs start again.
obj.spec.suspend = false
return obj
