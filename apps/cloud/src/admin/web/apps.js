// Applications page of the admin center (see app.js).
