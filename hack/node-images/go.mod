module sbo.local/node-images

go 1.22
