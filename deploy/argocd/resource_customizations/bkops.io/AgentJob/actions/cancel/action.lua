-- Cancel the running job where the system can (GSEKit cannot; bkops then says so in an Event).
obj.spec.cancel = true
return obj
