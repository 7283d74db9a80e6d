from nb2kfp.cli import main

main()
